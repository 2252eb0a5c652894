"""Write supervisord's configuration for `make run` from a Procfile.

The Procfile stays the one list of processes; scripts/run.sh runs this, then
``exec supervisord -c $VAR_DIR/supervisord.conf``. Each Procfile line becomes a
program run as ``/bin/sh -c '<command>'`` from the repository root, in one
group (``eshop``) so that Ctrl-C or SIGTERM stops them all at once (supervisord
stops groups one after another, the processes of a group together). Status:
``.venv/bin/supervisorctl -c var/supervisord.conf status`` (names are
``eshop:<process>``, e.g. ``pid eshop:catalog_worker``).

    python scripts/supervisord_conf.py [--procfile Procfile] [--var-dir var] [--output FILE]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GROUP = "eshop"
CONF_NAME = "supervisord.conf"
SOCKET_NAME = "supervisor.sock"
PID_NAME = "supervisord.pid"

# honcho's Procfile line: ``name: command``.
_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
# supervisord's config parser cuts a value at ";" or "#" after whitespace (an inline comment).
_INLINE_COMMENT = re.compile(r"\s[;#]")
# A unix socket path is at most 107 bytes on Linux (sun_path).
_MAX_SOCKET_PATH = 107

# A process must stay up STARTSECS seconds to count as started (RUNNING). One that
# exits sooner goes to BACKOFF and is started again after 1 s, then 2 s, 3 s, ... (one
# second more per failed start, no cap), and only after STARTRETRIES failed starts in a
# row (about 500,000 s of waiting for 1000: days) would it be given up (FATAL). A
# process that exits after it was RUNNING is started again at once and its count
# starts from zero. gunicorn and Celery fail at import within about 2 s, so a broken
# process shows as BACKOFF rather than flapping between RUNNING and EXITED.
STARTSECS = 5
STARTRETRIES = 1000
# On Ctrl-C or SIGTERM: SIGTERM to each process's group (a gunicorn arbiter and its
# workers, a Celery worker), SIGKILL to the group after STOPWAITSECS. gunicorn's
# graceful_timeout is 10 s; a Celery worker's warm shutdown took 4-5 s on the
# filesystem broker.
STOPWAITSECS = 10


class ProcfileError(ValueError):
    """A Procfile line this generator cannot turn into a program."""


def read_procfile(path: Path) -> dict[str, str]:
    """The processes of a Procfile, in order: {name: command}.

    Blank lines and ``#`` comments are skipped; any other line must be
    ``name: command`` with a name used once.
    """
    processes: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _PROCFILE_LINE.match(line.strip())
        if match is None:
            raise ProcfileError(f"{path}:{number}: not a 'name: command' line: {line!r}")
        name, command = match.group(1), match.group(2).strip()
        if name in processes:
            raise ProcfileError(f"{path}:{number}: process {name!r} is defined twice")
        processes[name] = command
    if not processes:
        raise ProcfileError(f"{path}: no processes")
    return processes


def _value(text: str, *, what: str) -> str:
    """``text`` as a supervisord config value: ``%`` doubled (supervisord expands
    ``%(name)s`` once), and refused where its parser would cut it short."""
    if _INLINE_COMMENT.search(text):
        raise ProcfileError(
            f"{what}: ';' or '#' after a space would be read by supervisord as a comment: "
            f"{text!r} (write ';' without a space before it)"
        )
    if "\n" in text or "\r" in text:
        raise ProcfileError(f"{what}: a line break in {text!r}")
    return text.replace("%", "%%")


def program_command(command: str) -> str:
    """The Procfile command as supervisord runs it: ``/bin/sh -c '<command>'``."""
    return f"/bin/sh -c {shlex.quote(command)}"


def render(
    processes: dict[str, str],
    *,
    var_dir: Path,
    directory: Path = REPO,
    password: str | None = None,
) -> str:
    """The text of supervisord.conf for these processes.

    The control socket asks for a user and ``password`` (a new random one by
    default), which the ``[supervisorctl]`` section of the same file holds: the
    file is for its owner only.
    """
    password = password or secrets.token_urlsafe(24)
    var_dir = var_dir.resolve()
    socket_path = var_dir / SOCKET_NAME
    if len(str(socket_path).encode()) > _MAX_SOCKET_PATH:
        raise ProcfileError(
            f"the control socket path {socket_path} is longer than a unix socket allows "
            f"({_MAX_SOCKET_PATH} bytes): use a shorter VAR_DIR"
        )
    var = _value(str(var_dir), what="VAR_DIR")
    root = _value(str(directory.resolve()), what="directory")
    lines = [
        "; Written by scripts/supervisord_conf.py from the Procfile: edit the Procfile, not this.",
        "[supervisord]",
        "nodaemon=true",
        # As root: say so, or supervisord warns that it did not drop privileges.
        *(["user=root"] if os.geteuid() == 0 else []),
        # Its own log on stdout once: silent, or nodaemon echoes every line a second time.
        "silent=true",
        "logfile=/dev/stdout",
        "logfile_maxbytes=0",
        "loglevel=info",
        f"pidfile={var}/{PID_NAME}",
        f"childlogdir={var}",
        f"directory={root}",
        # As honcho did: Python output reaches the terminal line by line, not in blocks.
        'environment=PYTHONUNBUFFERED="1"',
        "",
        "[unix_http_server]",
        f"file={var}/{SOCKET_NAME}",
        "chmod=0700",
        f"username={GROUP}",
        f"password={_value(password, what='password')}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{var}/{SOCKET_NAME}",
        f"username={GROUP}",
        f"password={_value(password, what='password')}",
        "",
        f"[group:{GROUP}]",
        f"programs={','.join(processes)}",
    ]
    for name, command in processes.items():
        lines += [
            "",
            f"[program:{name}]",
            f"command={_value(program_command(command), what=name)}",
            f"directory={root}",
            "autostart=true",
            "autorestart=true",
            f"startsecs={STARTSECS}",
            f"startretries={STARTRETRIES}",
            "stopsignal=TERM",
            f"stopwaitsecs={STOPWAITSECS}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
        ]
    return "\n".join(lines) + "\n"


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procfile", type=Path, default=REPO / "Procfile")
    parser.add_argument(
        "--var-dir",
        type=Path,
        default=Path(os.environ.get("VAR_DIR") or REPO / "var"),
        help="pidfile and control socket go here (default: $VAR_DIR, else var/)",
    )
    parser.add_argument("--output", type=Path, help=f"default: <var-dir>/{CONF_NAME}")
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        text = render(read_procfile(args.procfile), var_dir=args.var_dir)
    except (OSError, ProcfileError) as error:
        print(f"supervisord_conf: {error}", file=sys.stderr)
        return 1
    output: Path = args.output or args.var_dir / CONF_NAME
    output.parent.mkdir(parents=True, exist_ok=True)
    # It holds the control socket's password: created for its owner only.
    output.unlink(missing_ok=True)
    with os.fdopen(os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(text)
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
