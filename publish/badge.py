"""A project's badge, project/<name>/badge.svg: the version `pip install` gets from us
(pages.install_release: the newest release with wheels, not yanked nor a pre-release
when there is one), or "not built". Static, like the pages, and rewritten with them;
a README embeds it with the Markdown its project page shows."""

from __future__ import annotations

from dataclasses import dataclass

LABEL = "Raspberry Pi"
NOT_BUILT = "not built"
BUILT_COLOUR = "#4c1"
NOT_BUILT_COLOUR = "#9f9f9f"
CHAR_WIDTH = 6.5  # pixels, an average glyph of 11px Verdana; textLength does the rest
PADDING = 10


@dataclass
class Badge:
    title: str  # for screen readers and tooltips
    label: str
    value: str
    colour: str
    left: int  # the label's box, pixels
    right: int  # the value's

    @property
    def width(self) -> int:
        return self.left + self.right


def _box(text: str) -> int:
    return round(len(text) * CHAR_WIDTH) + PADDING


def badge(display_name: str, version: str | None) -> Badge:
    value = version if version is not None else NOT_BUILT
    return Badge(title=f"{display_name} on the {LABEL}: {value}", label=LABEL, value=value,
                 colour=BUILT_COLOUR if version is not None else NOT_BUILT_COLOUR,
                 left=_box(LABEL), right=_box(value))
