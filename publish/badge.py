"""A project's badge, project/<name>/badge.svg: the version `pip install` gets from us
(pages.install_release: the newest release with wheels, not yanked nor a pre-release
when there is one), or "not built". When every release with wheels is yanked, pip
installs one only with a warning (or not at all, pinned otherwise), so the badge
names it as yanked, not in the colour of an installable version. Static, like the
pages, and rewritten with them; a README embeds it with the Markdown its project page
shows. A deleted project's directory goes, badge and all: the web servers then answer
its badge's URL with FALLBACK, a "not built" badge (README images do not break)."""

from __future__ import annotations

from dataclasses import dataclass

LABEL = "Raspberry Pi"
NOT_BUILT = "not built"
BUILT_COLOUR = "#4c1"
YANKED_COLOUR = "#dfb317"
NOT_BUILT_COLOUR = "#9f9f9f"
CHAR_WIDTH = 6.5  # pixels, an average glyph of 11px Verdana; textLength does the rest
PADDING = 10
FALLBACK = "badge-not-built.svg"  # in www/: the badge of a project without one


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


def badge(display_name: str, version: str | None, yanked: bool = False) -> Badge:
    """The badge of `version` (None: nothing built), yanked or not."""
    if version is None:
        value, colour = NOT_BUILT, NOT_BUILT_COLOUR
    elif yanked:
        value, colour = f"{version} yanked", YANKED_COLOUR
    else:
        value, colour = version, BUILT_COLOUR
    return Badge(title=f"{display_name} on the {LABEL}: {value}", label=LABEL, value=value,
                 colour=colour, left=_box(LABEL), right=_box(value))
