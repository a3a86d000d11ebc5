"""The one base of every error a user can fix.

Usage::

    from llmcourse.errors import InputError
    raise InputError("--limit 必须至少是 1")       # the CLI prints 错误：--limit 必须至少是 1, exit status 2
    except CourseError as exc: ...                   # every fixable mistake of the course, one except

A :class:`CourseError`'s message is for the learner (Chinese): it names the file, line or field and says
what to fix. The CLI prints it as ``错误：<message>`` and exits with status 2; any other exception is a
bug and keeps its traceback. Subclasses keep the builtin base that callers already catch
(``ConfigError`` is still a ``ValueError``, ``ArtifactMissing`` a ``FileNotFoundError``).
"""

from __future__ import annotations


class CourseError(Exception):
    """Something the user can fix (config, data, paths, a missing run or package); the message says how."""


class SetupError(CourseError, RuntimeError):
    """The environment lacks what a step needs (a package, a tool, a GPU); the message says what to install."""


class RunMissing(CourseError, FileNotFoundError):
    """A step needs the output of an earlier one (a training run, an adapter) that is not there."""


class InputError(CourseError, ValueError):
    """A value the user gave (a command argument, a function argument in a notebook) that cannot be used."""


class ServiceUnreachable(CourseError, ConnectionError):
    """The course's API service is not running where the user pointed, or it refused the request."""
