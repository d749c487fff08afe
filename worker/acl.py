"""The Redis user a remote worker connects as: rq's keys and its own health key,
nothing else.

Anyone who can write to the queues can make the workers build whatever they name,
and a worker's password sits on a Pi that runs strangers' builds, so each Pi gets
its own user that cannot read or write other keys, flush, reconfigure, run
scripts or load modules. `python -m worker acl NAME` prints the commands."""

from __future__ import annotations

import re
import secrets

from worker.health import HEALTH_PREFIX

# What a worker touches: rq's keys and pub/sub channels (commands to a worker
# arrive on rq:pubsub:<name>) and the health keys.
KEY_PATTERNS = ("rq:*", f"{HEALTH_PREFIX}*")
CHANNEL_PATTERNS = ("rq:*",)
# All commands less the dangerous ones (FLUSHALL, CONFIG, DEBUG, MODULE, KEYS,
# CLIENT KILL...) and scripts (a script can touch any key the user cannot name);
# then what rq needs back: INFO (its version check) and naming its connection.
COMMANDS = ("+@all", "-@dangerous", "-@scripting", "+info", "+client|setname",
            "+client|getname", "+client|id")
WORKER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def worker_acl(name: str, password: str) -> str:
    """The ACL SETUSER command for worker `name`; `reset` first, so running it again
    replaces whatever that user had."""
    if not WORKER_NAME.match(name):
        raise ValueError(f"worker name {name!r}: letters, digits, '.', '_' and '-' only")
    if not password or any(c.isspace() for c in password):
        raise ValueError("the password must be non-empty, without spaces")
    rules = ["reset", "on", f">{password}", "resetkeys",
             *(f"~{p}" for p in KEY_PATTERNS), "resetchannels",
             *(f"&{p}" for p in CHANNEL_PATTERNS), *COMMANDS]
    return f"ACL SETUSER {name} " + " ".join(rules)


def new_password() -> str:
    return secrets.token_urlsafe(32)
