"""What the notebooks use around the library calls they teach: display helpers (``display``), the no-code
forms (``form_day1``, ``form_day2``), the pitfalls lab (``pitfalls``) and running them all (``run``)."""
