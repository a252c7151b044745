"""The README as a front door: its links and anchors resolve, its first commands exist, it stays short."""
import re

from conftest import REPO

PAGES = [REPO / "README.md"] + sorted((REPO / "docs").rglob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def without_fences(text):
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def prose(text):
    """`text` without fenced code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", without_fences(text))


def anchors(page):
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens,
    a repeated heading numbered -1, -2, ..."""
    seen, out = {}, set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", without_fences(page.read_text()), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


def test_every_relative_link_and_anchor_resolves():
    assert len(PAGES) > 5
    broken = []
    for page in PAGES:
        for target in LINK.findall(prose(page.read_text())):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readmes_first_commands_exist_and_it_stays_short():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    block = re.search(r"^```\w*\n(.*?)^```", readme, flags=re.S | re.M).group(1)
    commands = [line.split("#")[0].split() for line in block.splitlines() if line.split("#")[0].strip()]
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M))
    assert commands and [c[0] for c in commands if c[0] not in ("make", "python")] == []
    for words in commands:
        if words[0] == "make":
            assert words[1] in targets, f"make {words[1]}: no such target"
        else:
            assert (REPO / words[1]).is_file(), f"{words[1]}: no such script"


def test_the_checks_catch_a_broken_link_and_a_missing_target(tmp_path):
    """The checks above would fail on a dead link, a missing heading and an unknown make target."""
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n## The `x` flag: yes\n\n[ok](#the-x-flag-yes) [dead](gone.md) [no heading](#nope)\n")
    found = LINK.findall(prose(page.read_text()))
    assert found == ["#the-x-flag-yes", "gone.md", "#nope"]
    assert anchors(page) == {"a-page", "the-x-flag-yes"}
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M))
    assert {"test", "demo"} <= targets and "demo-nonsense" not in targets
