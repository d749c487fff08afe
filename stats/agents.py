"""User agents: what PyPA's linehaul makes of them, plus our rule for bots.

linehaul knows installers (pip, uv, poetry, ...), their JSON details (Python,
implementation, distro, libc, system, cpu, CI) and browsers. It does not know bots:
crawlers call themselves Mozilla, so a bot is an agent that linehaul ignores or takes
for a browser and whose name says crawler (BOT below).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, fields

from linehaul.ua import parser as linehaul

from stats.logline import unescape

BOT = re.compile(r"bot\b|bot/|spider|crawl|slurp|facebookexternalhit|bingpreview",
                 re.IGNORECASE)
NOT_INSTALLERS = frozenset({"Browser", "OS"})


@dataclass(frozen=True, slots=True)
class Agent:
    id: int                     # a 63-bit hash of user_agent
    user_agent: str
    installer: str | None = None
    installer_version: str | None = None
    python: str | None = None
    implementation: str | None = None
    implementation_version: str | None = None
    distro: str | None = None
    distro_version: str | None = None
    distro_id: str | None = None
    libc: str | None = None
    libc_version: str | None = None
    system: str | None = None
    system_release: str | None = None
    cpu: str | None = None
    openssl_version: str | None = None
    setuptools_version: str | None = None
    rustc_version: str | None = None
    ci: bool | None = None
    bot: bool = False

    @property
    def is_installer(self) -> bool:
        """An installer fetching a project's simple page is looking for it."""
        return not self.bot and self.installer is not None and \
            self.installer not in NOT_INSTALLERS

    def row(self) -> dict:
        return asdict(self)


COLUMNS = [f.name for f in fields(Agent)]


def agent_id(user_agent: str) -> int:
    digest = hashlib.blake2b(user_agent.encode("utf-8", "surrogateescape"), digest_size=8)
    return int.from_bytes(digest.digest(), "big") >> 1


def parse_agent(user_agent: str) -> Agent:
    """Everything linehaul finds in `user_agent`; an agent it cannot parse is kept with
    its string only."""
    ident = agent_id(user_agent)
    try:
        parsed = linehaul.parse(user_agent)
    except linehaul.UnknownUserAgentError:
        return Agent(ident, user_agent, bot=bool(BOT.search(user_agent)))
    except Exception:  # a hostile agent string must not stop a load
        return Agent(ident, user_agent)
    if parsed is None:  # one of the robots and tools linehaul deliberately ignores
        return Agent(ident, user_agent, bot=True)
    installer = parsed.installer
    implementation = parsed.implementation
    distro = parsed.distro
    libc = distro.libc if distro else None
    system = parsed.system
    name = installer.name if installer else None
    return Agent(
        ident, user_agent,
        installer=name,
        installer_version=installer.version if installer else None,
        python=parsed.python,
        implementation=implementation.name if implementation else None,
        implementation_version=implementation.version if implementation else None,
        distro=distro.name if distro else None,
        distro_version=distro.version if distro else None,
        distro_id=distro.id if distro else None,
        libc=libc.lib if libc else None,
        libc_version=libc.version if libc else None,
        system=system.name if system else None,
        system_release=system.release if system else None,
        cpu=parsed.cpu,
        openssl_version=parsed.openssl_version,
        setuptools_version=parsed.setuptools_version,
        rustc_version=parsed.rustc_version,
        ci=parsed.ci,
        bot=name in (None, "Browser") and bool(BOT.search(user_agent)),
    )


class AgentCache:
    """Each distinct agent string (as logged, escaped) is parsed once; `fresh` holds
    those parsed since the last `take_fresh`, for writing to the agents table."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self.known: dict[str, Agent] = {}
        self.fresh: list[Agent] = []

    def get(self, user_agent: str) -> Agent:
        agent = self.known.get(user_agent)
        if agent is None:
            if len(self.known) >= self.limit:
                self.known.clear()  # a flood of unique agents must not exhaust memory
            agent = self.known[user_agent] = parse_agent(unescape(user_agent))
            self.fresh.append(agent)
        return agent

    def take_fresh(self) -> list[Agent]:
        fresh, self.fresh = self.fresh, []
        return fresh
