"""Results, progress and status as what Gradio components display (HTML, gallery items, tables).

Every string that came from a user or from a file name is HTML-escaped here.
"""

from __future__ import annotations

import html
from typing import Any, Optional

from app.backend import LibraryStatus, SearchPage, SegmentHit, TextHit
from app.jobs import DONE, FAILED, IDLE, RUNNING, JobSnapshot


def clock(seconds: float) -> str:
    """``75.5`` -> ``"1:15.5"``; hours when needed."""
    seconds = max(0.0, float(seconds))
    minutes, secs = divmod(seconds, 60.0)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:04.1f}"
    return f"{minutes}:{secs:04.1f}"


def hit_caption(hit: SegmentHit) -> str:
    """Card caption: name, time span, score."""
    return f"{hit.name} · {clock(hit.start_s)}–{clock(hit.end_s)} · score {hit.score:.3f}"


def gallery_items(hits: list[SegmentHit]) -> list[tuple[str, str]]:
    """``(thumbnail path, caption)`` pairs for a ``gr.Gallery``."""
    return [(hit.thumbnail or "", hit_caption(hit)) for hit in hits if hit.thumbnail]


def page_summary(page: SearchPage, what: str) -> str:
    """One line above the results."""
    if not page.hits:
        return f"No results for {html.escape(what)}." if page.page == 1 else f"No more results for {html.escape(what)}."
    first = (page.page - 1) * page.page_size + 1
    more = " — more on the next page" if page.has_more else ""
    return (f"Results {first}–{first + len(page.hits) - 1} for {html.escape(what)} "
            f"(page {page.page}){more}. Click a result to play it.")


def player_html(url: Optional[str], hit: Optional[SegmentHit]) -> str:
    """A ``<video>`` that starts at the segment (URL already checked and carrying ``#t=``)."""
    if not url or hit is None:
        return "<div class='ms-player-empty'>Click a result to play it here.</div>"
    return (
        f"<div class='ms-player'><div><b>{html.escape(hit.name)}</b> — {clock(hit.start_s)} to "
        f"{clock(hit.end_s)} (score {hit.score:.3f})</div>"
        f"<video controls autoplay muted playsinline preload='auto' style='width:100%;max-height:420px' "
        f"src='{html.escape(url, quote=True)}'></video>"
        f"<div style='font-size:0.85em;opacity:0.7'>{html.escape(hit.video_path)}</div></div>"
    )


def text_rows(texts: list[TextHit]) -> list[list[Any]]:
    """Rows for the video-to-text table: score, caption, corpus."""
    return [[round(t.score, 4), t.text, t.source] for t in texts]


def progress_html(snapshot: JobSnapshot) -> str:
    """Live indexing progress: files, segments, rate, failures with reasons."""
    p = snapshot.progress
    if snapshot.state == IDLE:
        return "<div class='ms-progress'>No indexing run yet.</div>"
    state = {RUNNING: "Indexing…", DONE: "Finished", FAILED: "Failed"}.get(snapshot.state, snapshot.state)
    total = p.files_total or 0
    done = p.files_done + p.files_skipped + len(p.failures)
    pct = int(100 * done / total) if total else (100 if snapshot.state == DONE else 0)
    lines = [
        f"<div class='ms-progress' data-state='{html.escape(snapshot.state)}'>",
        f"<b>{state}</b> {html.escape(', '.join(snapshot.folders))}",
        f"<progress max='100' value='{pct}' style='width:100%'></progress>",
        f"<div>files {done}/{total} (indexed {p.files_done}, unchanged {p.files_skipped}, failed {len(p.failures)})"
        f" · segments {p.segments} · {snapshot.segments_per_s:.1f} segments/s · {snapshot.elapsed_s:.1f} s</div>",
    ]
    if p.current_file and snapshot.state == RUNNING:
        lines.append(f"<div style='opacity:0.7'>now: {html.escape(p.current_file)}</div>")
    if snapshot.error:
        lines.append(f"<div style='color:#c00'>{html.escape(snapshot.error)}</div>")
    if p.failures:
        lines.append("<details open><summary>Failures</summary><ul>")
        lines += [f"<li><code>{html.escape(f.file)}</code>: {html.escape(f.reason)}</li>" for f in p.failures[:200]]
        if len(p.failures) > 200:
            lines.append(f"<li>… and {len(p.failures) - 200} more</li>")
        lines.append("</ul></details>")
    lines.append("</div>")
    return "\n".join(lines)


def status_markdown(status: LibraryStatus) -> str:
    """Library counts and the model in use."""
    lines = [
        f"**{status.videos}** videos · **{status.segments}** segments · **{status.failed}** failed · "
        f"**{status.texts}** captions",
        "",
        f"Model: `{status.model}`  ",
        f"Database: `{status.db_path}`",
    ]
    return "\n".join(lines)


def roots_rows(status: LibraryStatus) -> list[list[Any]]:
    """Rows for the folders table."""
    return [[r.folder, r.videos, r.segments, r.failed] for r in status.roots]


def message_html(text: str, kind: str = "info") -> str:
    """A short notice (``info`` / ``error``), escaped."""
    colour = "#c00" if kind == "error" else "inherit"
    return f"<div class='ms-message ms-{html.escape(kind)}' style='color:{colour}'>{html.escape(text)}</div>"
