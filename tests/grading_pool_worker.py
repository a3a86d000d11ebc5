"""A stand-in grading worker for tests of llmcourse.grading.workflow.run_pool (spawned, so it lives in a module).

Items: "hang…" sleeps for ever, "crash…" exits, anything else comes back upper-cased.
"""
import os
import time


def serve(connection) -> None:
    connection.send("ready")
    while True:
        item = connection.recv()
        if item is None:
            return
        if item.startswith("hang"):
            time.sleep(3600)
        if item.startswith("crash"):
            os._exit(3)
        connection.send(item.upper())


def start(connection):
    import multiprocessing
    process = multiprocessing.get_context("spawn").Process(target=serve, args=(connection,), daemon=True)
    process.start()
    return process
