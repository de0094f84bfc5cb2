"""The cleaning stage: article text, title and metadata out of HTML or chrome-laden scraped text.

Pure and deterministic: the same message and the same learned chrome give the
same result. Every line that does not reach the body is reported with its
reason, so what the cleaner did can be audited from the event alone.

How context is used on top of the line rules (newsflow.domain.cleaning.chrome_rules):

- the title is the message's title, else trafilatura's, else the first head
  line that repeats, else the first line; " | Section | Site" suffixes are
  split off into metadata, and every later copy of the title is removed;
- lines before the title's first appearance at the head of the text are the
  site's header (site name, tagline, navigation, a date);
- the trailing block starts at the first end marker (comments, share, tags,
  related, navigation, ...) after which no paragraph of body length follows;
  unclassified lines in it are teaser headlines of other stories;
- lines learned as chrome for the source (newsflow.domain.cleaning.learned_chrome) go.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date

from newsflow.domain.cleaning import chrome_rules as rules
from newsflow.domain.cleaning import html_extraction
from newsflow.domain.cleaning.text import collapse_spaces, line_key, normalize_line, repair, words
from newsflow.domain.contract import RawArticleV1

STAGE_NAME = "clean"
CLEANER_VERSION = "2"
TITLE = "title"  # reason for the line that became the title

HEAD_LINES = 8  # non-empty lines searched for the title and the header before it
BODY_WORDS = 25  # a line this long is a paragraph of body text, not a teaser
SENTENCE_WORDS = 8  # ... and so is a line this long that ends like a sentence (headlines do not)
CANDIDATE_MAX_WORDS = 30  # longer lines are never counted as per-source chrome
MAX_CANDIDATES = 200
BINARY_RATIO = 0.05  # share of control, private-use or replacement characters that makes input binary

_BINARY_CHARS = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffd\ue000-\uf8ff]")
_BINARY_MAGIC = ("%PDF-", "PK\x03\x04", "\x89PNG", "GIF87a", "GIF89a", "\xff\xd8\xff", "ID3", "OggS")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’»)]*$")
_TITLE_SEPARATOR = re.compile(r"\s+[|‖]\s+|\s+[-–—:]\s+")


@dataclass(frozen=True)
class Removed:
    text: str
    reason: str


@dataclass(frozen=True)
class Cleaned:
    title: str | None
    text: str
    metadata: dict[str, str]
    removed: tuple[Removed, ...]
    chrome_candidates: tuple[str, ...]
    input_kind: str
    extractor: str | None = None

    @property
    def word_count(self) -> int:
        return words(self.text)

    def removed_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.removed:
            counts[r.reason] = counts.get(r.reason, 0) + 1
        return counts


@dataclass(frozen=True)
class CleaningFailure:
    reason: str
    detail: str


@dataclass
class _Line:
    text: str
    gap_before: bool
    reason: str | None = None
    value: str | None = None


@dataclass
class _State:
    lines: list[_Line]
    metadata: dict[str, str] = field(default_factory=dict)
    removed_fragments: list[Removed] = field(default_factory=list)


def candidate_hash(key: str) -> str:
    """Short stable id of a normalized line, the unit of per-source chrome learning."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()


def looks_binary(body: str) -> bool:
    if body.lstrip().startswith(_BINARY_MAGIC):
        return True
    sample = body[:65536]
    return bool(sample) and len(_BINARY_CHARS.findall(sample)) / len(sample) >= BINARY_RATIO


def split_page_title(title: str, site_names: Collection[str]) -> tuple[str, list[str]]:
    """ "Headline | News | DV" → ("Headline", ["News", "DV"]).

    A " | " suffix is always split; " - Site" only when the last part names the site,
    because hyphens and colons are common inside real headlines.
    """
    parts = [p.strip() for p in re.split(r"\s+[|‖]\s+", title) if p.strip()]
    if len(parts) > 1 and all(words(p) <= 5 for p in parts[1:]):
        return parts[0], parts[1:]
    keys = {line_key(s) for s in site_names if s}
    pieces = _TITLE_SEPARATOR.split(title)
    if len(pieces) > 1 and line_key(pieces[-1]) in keys:
        return title[: title.rfind(pieces[-1])].rstrip(" -–—:|"), [pieces[-1].strip()]
    return title, []


def clean_article(msg: RawArticleV1, learned: Collection[str] = ()) -> Cleaned | CleaningFailure:
    """Clean one validated message. ``learned`` holds candidate hashes learned as chrome for its source."""
    is_html = bool(msg.html and msg.html.strip())
    raw = msg.html if is_html else msg.text
    body = raw or ""
    if looks_binary(body):
        return CleaningFailure("binary_content", "the body is binary data, not text or HTML")
    metadata: dict[str, str] = {}
    title = normalize_line(msg.title) if msg.title else None
    extractor = None
    if is_html:
        depth = html_extraction.nesting_depth(body)
        if depth > html_extraction.MAX_NESTING_DEPTH:
            return CleaningFailure(
                "html_too_deep", f"elements nest {depth} deep (limit {html_extraction.MAX_NESTING_DEPTH})"
            )
        page = html_extraction.extract(body)
        extractor = html_extraction.EXTRACTOR
        body = page.text
        title = title or (normalize_line(page.title) if page.title else None)
        for key, value in (
            ("byline", page.author),
            ("html_date", page.date),
            ("site_name", page.sitename),
            ("description", page.description),
        ):
            if value and normalize_line(value):
                metadata[key] = normalize_line(value)
    published = msg.published_at.date() if msg.published_at else _iso_date(metadata.get("html_date"))
    state = _State(_split_lines(repair(body)), metadata)
    sites = [s for s in (msg.source, metadata.get("site_name")) if s]
    _classify(state, published, sites)
    _apply_learned(state, learned)  # before the title search: a learned site header is not a headline
    title = _find_title(state, title, sites)
    _drop_repeats(state)
    _mark_trailing_block(state)
    _strip_byline_prefix(state)
    kept = [ln for ln in state.lines if ln.reason is None]
    text = _join(kept)
    if not text:
        return CleaningFailure("empty_after_cleaning", f"no article text left after {STAGE_NAME} v{CLEANER_VERSION}")
    removed = [Removed(ln.text, ln.reason) for ln in state.lines if ln.reason is not None]
    return Cleaned(
        title=title,
        text=text,
        metadata=state.metadata,
        removed=tuple(state.removed_fragments + removed),
        chrome_candidates=_candidates(state.lines),
        input_kind="html" if is_html else "text",
        extractor=extractor,
    )


def _iso_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value[:10]) if value else None
    except ValueError:
        return None


def _split_lines(body: str) -> list[_Line]:
    lines: list[_Line] = []
    gap = False
    for raw in body.split("\n"):
        text = collapse_spaces(raw)
        if not text:
            gap = True
            continue
        lines.append(_Line(text, gap_before=gap and bool(lines)))
        gap = False
    return lines


def _classify(state: _State, published: date | None, sites: list[str]) -> None:
    site_keys = {line_key(s) for s in sites}
    seen_body = False
    for ln in state.lines:
        match = rules.classify(ln.text)
        if match:
            ln.reason, ln.value = match.reason, match.value
        elif line_key(ln.text) in site_keys:
            ln.reason = rules.SITE_NAME
        elif (day := rules.parse_date_line(ln.text)) is not None:
            ln.reason = rules.SCRAPE_DATE if published and day != published else rules.DATE_LINE
            ln.value = day.isoformat()
        elif not seen_body and (name := rules.byline(ln.text)):
            ln.reason, ln.value = rules.BYLINE, name
        seen_body = seen_body or (ln.reason is None and _is_body(ln.text))
        _record_metadata(state.metadata, ln)


def _is_body(line: str) -> bool:
    n = words(line)
    return n >= BODY_WORDS or (n >= SENTENCE_WORDS and _SENTENCE_END.search(line) is not None)


def _record_metadata(metadata: dict[str, str], ln: _Line) -> None:
    key = {
        rules.SOURCE_CREDIT: "source_credit",
        rules.BYLINE: "byline",
        rules.DATE_LINE: "dateline",
        rules.SCRAPE_DATE: "page_date",
    }.get(ln.reason or "")
    if key and ln.value:
        metadata.setdefault(key, ln.value)
    if ln.reason == rules.EDITOR_CREDIT:
        metadata.setdefault("editor_credit", ln.text)


def _find_title(state: _State, title: str | None, sites: list[str]) -> str | None:
    head = [ln for ln in state.lines if ln.reason is None][:HEAD_LINES]
    title_line: _Line | None = None
    if title is None and head:
        keys = [line_key(split_page_title(ln.text, sites)[0]) for ln in head]
        repeated = [ln for ln, k in zip(head, keys, strict=True) if keys.count(k) > 1]
        if repeated or len(state.lines) > 1:
            title_line = repeated[0] if repeated else head[0]
            title = title_line.text
    if title is None:
        return None
    title, suffix = split_page_title(title, sites)
    if len(suffix) >= 1:
        state.metadata.setdefault("site_name", suffix[-1])
    if len(suffix) >= 2:
        state.metadata.setdefault("section", " / ".join(suffix[:-1]))
    title_key = line_key(title)
    first_in_head: int | None = None
    for i, ln in enumerate(state.lines):
        if ln.reason is not None:
            continue
        if line_key(split_page_title(ln.text, sites)[0]) != title_key:
            continue
        if ln is title_line:
            ln.reason = rules.PAGE_TITLE if line_key(ln.text) != title_key else TITLE
        else:
            ln.reason = rules.PAGE_TITLE if line_key(ln.text) != title_key else rules.DUPLICATE_TITLE
        if first_in_head is None and ln in head:
            first_in_head = i
    if first_in_head is not None:
        for ln in state.lines[:first_in_head]:
            if ln.reason is None:
                ln.reason = rules.HEADER
    return title


def _drop_repeats(state: _State) -> None:
    previous: str | None = None
    for ln in state.lines:
        if ln.reason is not None:
            continue
        key = line_key(ln.text)
        if key and key == previous:
            ln.reason = rules.DUPLICATE_LINE
        previous = key


def _mark_trailing_block(state: _State) -> None:
    start: int | None = None
    for i in range(len(state.lines) - 1, -1, -1):
        ln = state.lines[i]
        if ln.reason is None and _is_body(ln.text):
            break
        if ln.reason in rules.END_MARKERS:
            start = i
    if start is None:
        return
    for ln in state.lines[start:]:
        if ln.reason is None:
            ln.reason = rules.TEASER


def _apply_learned(state: _State, learned: Collection[str]) -> None:
    if not learned:
        return
    for ln in state.lines:
        if ln.reason is None and words(ln.text) <= CANDIDATE_MAX_WORDS and candidate_hash(line_key(ln.text)) in learned:
            ln.reason = rules.LEARNED_CHROME


def _strip_byline_prefix(state: _State) -> None:
    first = next((ln for ln in state.lines if ln.reason is None), None)
    if first is None:
        return
    found = rules.byline_prefix(first.text)
    if found:
        prefix, name = found
        first.text = first.text[len(prefix) :].lstrip()
        state.removed_fragments.append(Removed(prefix, rules.BYLINE))
        state.metadata.setdefault("byline", name)


def _join(lines: list[_Line]) -> str:
    out: list[str] = []
    for ln in lines:
        if out:
            out.append("\n\n" if ln.gap_before else "\n")
        out.append(ln.text)
    return "".join(out).strip()


def _candidates(lines: list[_Line]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for ln in lines:
        if words(ln.text) <= CANDIDATE_MAX_WORDS:
            key = line_key(ln.text)
            if key:
                seen.setdefault(candidate_hash(key), None)
        if len(seen) >= MAX_CANDIDATES:
            break
    return tuple(seen)
