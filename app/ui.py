"""The Gradio Blocks app: Search, Video to text and Library tabs, plus the JSON API.

UI handlers return a message instead of raising, so users never see a stack trace;
the JSON endpoints live in ``app/api.py``. All handlers run through Gradio's queue;
indexing runs in a background thread (``app/jobs.py``) and is polled by a timer.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any, Optional

import gradio as gr

from app import render
from app.api import register_api
from app.backend import SearchPage, SegmentHit
from app.config import VIDEO_SUFFIXES
from app.errors import user_message
from app.jobs import RUNNING
from app.service import AppService

logger = logging.getLogger(__name__)

CSS = """
#ms-results .caption-label { white-space: normal; font-size: 0.8em; }
.ms-player-empty { opacity: 0.6; padding: 1em; }
"""

NO_PAGE: dict[str, Any] = {"mode": "", "query": "", "segment_id": None, "page": 1, "has_more": False}


def _open_if_zero(value: Any) -> Any:
    """UI number boxes show 0 when empty: 0 as a duration bound or span end means "no limit"."""
    return None if value in (None, "", 0) else value


def _hit_from_state(value: dict[str, Any]) -> SegmentHit:
    return SegmentHit(**value)


def _page_outputs(service: AppService, page: SearchPage, nav: dict[str, Any], what: str) -> tuple:
    hits = [asdict(h) for h in page.hits]
    nav = {**nav, "page": page.page, "has_more": page.has_more}
    return (
        render.gallery_items(page.hits),
        render.message_html(render.page_summary(page, what)),
        hits,
        nav,
        gr.update(interactive=page.page > 1),
        gr.update(interactive=page.has_more),
        f"Page {page.page}",
        render.player_html(None, None),
        None,
        gr.update(interactive=False),
    )


def _error_outputs(message: str, nav: dict[str, Any]) -> tuple:
    return (
        [], render.message_html(message, "error"), [], nav, gr.update(interactive=False),
        gr.update(interactive=False), "", render.player_html(None, None), None, gr.update(interactive=False),
    )


def build_blocks(service: AppService, title: str = "mambasearch") -> gr.Blocks:
    """The whole app (not launched). See :func:`app.launcher.create_app` for launch settings."""
    limits = service.config.limits
    with gr.Blocks(title=title, analytics_enabled=False, fill_width=True) as demo:
        gr.Markdown(f"# {title}\nSearch your videos with words, find words for your videos.")
        with gr.Tabs():
            # ------------------------------------------------------------------ Search
            with gr.Tab("Search", id="search"):
                with gr.Row():
                    query = gr.Textbox(label="Describe what you are looking for", elem_id="ms-query",
                                       placeholder="e.g. a red circle moves to the left", scale=5, lines=1)
                    search_btn = gr.Button("Search", variant="primary", elem_id="ms-search-btn", scale=1)
                with gr.Accordion("Filters", open=False):
                    with gr.Row():
                        folder_filter = gr.Dropdown(label="Only in folder", choices=[""], value="",
                                                    allow_custom_value=True, elem_id="ms-folder-filter")
                        min_dur = gr.Number(label="Video at least (s)", value=None, minimum=0)
                        max_dur = gr.Number(label="Video at most (s)", value=None, minimum=0)
                search_msg = gr.HTML(elem_id="ms-search-message")
                with gr.Row():
                    with gr.Column(scale=3):
                        gallery = gr.Gallery(label="Results", columns=4, allow_preview=False, elem_id="ms-results",
                                             object_fit="cover", height=560, show_label=False)
                        with gr.Row():
                            prev_btn = gr.Button("◀ Previous", interactive=False, size="sm", elem_id="ms-prev")
                            page_label = gr.Markdown("")
                            next_btn = gr.Button("Next ▶", interactive=False, size="sm", elem_id="ms-next")
                    with gr.Column(scale=2):
                        player = gr.HTML(render.player_html(None, None), elem_id="ms-player")
                        more_btn = gr.Button("More like this", interactive=False, size="sm", elem_id="ms-more")
                hits_state = gr.State([])
                nav_state = gr.State(dict(NO_PAGE))
                selected_state = gr.State(None)

            # ------------------------------------------------------------------ Video to text
            with gr.Tab("Video to text", id="video2text"):
                with gr.Row():
                    upload = gr.File(label="Upload a clip", file_types=list(VIDEO_SUFFIXES), type="filepath",
                                     elem_id="ms-upload")
                    with gr.Column():
                        library_pick = gr.Dropdown(label="…or pick a library video", choices=[], value=None,
                                                   elem_id="ms-library-pick")
                        with gr.Row():
                            span_start = gr.Number(label="From (s, optional)", value=None, minimum=0)
                            span_end = gr.Number(label="To (s, optional)", value=None, minimum=0)
                        top_k = gr.Slider(1, min(50, limits.max_top_k), value=10, step=1, label="How many")
                        v2t_btn = gr.Button("Find matching texts", variant="primary", elem_id="ms-v2t-btn")
                v2t_msg = gr.HTML()
                texts_table = gr.Dataframe(headers=["score", "caption", "corpus"], interactive=False,
                                           label="Best matching captions", elem_id="ms-texts")
                v2t_gallery = gr.Gallery(label="Most similar library segments", columns=4, allow_preview=False,
                                         elem_id="ms-v2t-results", object_fit="cover", height="auto")
                v2t_player = gr.HTML(render.player_html(None, None))
                v2t_hits = gr.State([])

            # ------------------------------------------------------------------ Library
            with gr.Tab("Library", id="library"):
                status_md = gr.Markdown(elem_id="ms-status")
                roots_table = gr.Dataframe(headers=["folder", "videos", "segments", "failed"], interactive=False,
                                           label="Folders", elem_id="ms-roots")
                with gr.Row():
                    folder_in = gr.Textbox(label="Folder to add (absolute path)", placeholder="/home/me/Videos",
                                           scale=4, elem_id="ms-folder-in")
                    add_btn = gr.Button("Add and index", variant="primary", scale=1, elem_id="ms-add")
                with gr.Row():
                    rescan_btn = gr.Button("Rescan all folders", elem_id="ms-rescan")
                    remove_pick = gr.Dropdown(label="Folder to remove", choices=[], value=None, scale=3)
                    remove_btn = gr.Button("Remove folder", variant="stop", elem_id="ms-remove")
                lib_msg = gr.HTML()
                progress = gr.HTML(render.progress_html(service.progress()), elem_id="ms-progress")
                timer = gr.Timer(1.0)
                seen_state = gr.State((0, ""))

        # ====================================================================== handlers
        search_outputs = [gallery, search_msg, hits_state, nav_state, prev_btn, next_btn, page_label, player,
                          selected_state, more_btn]

        def run_search(text: Any, folder: Any, low: Any, high: Any) -> tuple:
            nav = {**NO_PAGE, "mode": "text", "query": text}
            try:
                page = service.search(text, folder, _open_if_zero(low), _open_if_zero(high), 1)
                return _page_outputs(service, page, nav, f"“{page_query(text)}”")
            except Exception as error:
                return _error_outputs(user_message(error), dict(NO_PAGE))

        def page_query(text: Any) -> str:
            return " ".join(str(text).split())[:80]

        def run_page(nav: dict[str, Any], delta: int, folder: Any, low: Any, high: Any) -> tuple:
            target = max(1, int(nav.get("page", 1)) + delta)
            try:
                if nav.get("mode") == "text":
                    page = service.search(nav["query"], folder, _open_if_zero(low), _open_if_zero(high), target)
                    return _page_outputs(service, page, nav, f"“{page_query(nav['query'])}”")
                if nav.get("mode") == "similar":
                    page = service.similar(nav["segment_id"], folder, _open_if_zero(low), _open_if_zero(high),
                                           target)
                    return _page_outputs(service, page, nav, nav["query"])
                return _error_outputs("search first", nav)
            except Exception as error:
                return _error_outputs(user_message(error), nav)

        def on_select(hits: list[dict[str, Any]], evt: gr.SelectData) -> tuple:
            try:
                hit = _hit_from_state(hits[int(evt.index)])
                url = service.play_url(hit)
            except Exception as error:
                return render.message_html(user_message(error), "error"), None, gr.update(interactive=False)
            return render.player_html(url, hit), asdict(hit), gr.update(interactive=hit.segment_id is not None)

        def run_similar(selected: Optional[dict[str, Any]], folder: Any, low: Any, high: Any) -> tuple:
            if not selected or selected.get("segment_id") is None:
                return _error_outputs("click a result first", dict(NO_PAGE))
            hit = _hit_from_state(selected)
            label = f"segments like {hit.name} {render.clock(hit.start_s)}–{render.clock(hit.end_s)}"
            nav = {**NO_PAGE, "mode": "similar", "query": label, "segment_id": hit.segment_id}
            try:
                page = service.similar(hit.segment_id, folder, _open_if_zero(low), _open_if_zero(high), 1)
                return _page_outputs(service, page, nav, label)
            except Exception as error:
                return _error_outputs(user_message(error), dict(NO_PAGE))

        private = dict(api_visibility="private")
        search_btn.click(run_search, [query, folder_filter, min_dur, max_dur], search_outputs, **private)
        query.submit(run_search, [query, folder_filter, min_dur, max_dur], search_outputs, **private)
        prev_btn.click(lambda n, f, lo, hi: run_page(n, -1, f, lo, hi), [nav_state, folder_filter, min_dur, max_dur],
                       search_outputs, **private)
        next_btn.click(lambda n, f, lo, hi: run_page(n, 1, f, lo, hi), [nav_state, folder_filter, min_dur, max_dur],
                       search_outputs, **private)
        gallery.select(on_select, [hits_state], [player, selected_state, more_btn], **private)
        more_btn.click(run_similar, [selected_state, folder_filter, min_dur, max_dur], search_outputs, **private)

        def run_v2t(file: Any, pick: Any, start: Any, end: Any, k: Any) -> tuple:
            try:
                texts, segments = service.video_to_text(file, pick, _open_if_zero(start), _open_if_zero(end), k)
            except Exception as error:
                return render.message_html(user_message(error), "error"), [], [], [], render.player_html(None, None)
            note = (f"{len(texts)} captions, {len(segments)} segments." if texts or segments else
                    "Nothing found (are caption corpora loaded? see docs/app.md).")
            return (render.message_html(note), render.text_rows(texts), render.gallery_items(segments),
                    [asdict(h) for h in segments], render.player_html(None, None))

        def on_v2t_select(hits: list[dict[str, Any]], evt: gr.SelectData) -> str:
            try:
                hit = _hit_from_state(hits[int(evt.index)])
                return render.player_html(service.play_url(hit), hit)
            except Exception as error:
                return render.message_html(user_message(error), "error")

        v2t_btn.click(run_v2t, [upload, library_pick, span_start, span_end, top_k],
                      [v2t_msg, texts_table, v2t_gallery, v2t_hits, v2t_player], **private)
        v2t_gallery.select(on_v2t_select, [v2t_hits], [v2t_player], **private)

        def library_view() -> tuple:
            try:
                status = service.status()
                roots = [r.folder for r in status.roots]
                return (render.status_markdown(status), render.roots_rows(status),
                        gr.update(choices=[""] + roots), gr.update(choices=roots, value=None),
                        gr.update(choices=service.videos()))
            except Exception as error:
                message = user_message(error)
                return (f"**Library unavailable:** {message}", [], gr.update(), gr.update(), gr.update())

        library_outputs = [status_md, roots_table, folder_filter, remove_pick, library_pick]

        def start_index(folder: Any) -> tuple:
            try:
                snapshot = service.index_folder(folder)
                return render.message_html(f"Indexing {snapshot.folders[0]} …"), render.progress_html(snapshot)
            except Exception as error:
                return render.message_html(user_message(error), "error"), render.progress_html(service.progress())

        def start_rescan() -> tuple:
            try:
                snapshot = service.rescan()
                return render.message_html("Rescanning all folders …"), render.progress_html(snapshot)
            except Exception as error:
                return render.message_html(user_message(error), "error"), render.progress_html(service.progress())

        def do_remove(folder: Any) -> str:
            try:
                removed = service.remove_folder(folder)
                return render.message_html(f"Removed {folder} ({removed} videos) from the library.")
            except Exception as error:
                return render.message_html(user_message(error), "error")

        def tick(seen: tuple) -> tuple:
            snapshot = service.progress()
            key = (snapshot.job_id, snapshot.state)
            if tuple(seen) == key and snapshot.state != RUNNING:
                return (gr.update(), key) + (gr.update(),) * len(library_outputs)
            refresh = snapshot.state != RUNNING  # a run just ended: show new counts
            view = library_view() if refresh else (gr.update(),) * len(library_outputs)
            return (render.progress_html(snapshot), key) + tuple(view)

        add_btn.click(start_index, [folder_in], [lib_msg, progress], **private)
        rescan_btn.click(start_rescan, [], [lib_msg, progress], **private)
        remove_btn.click(do_remove, [remove_pick], [lib_msg], **private).then(
            library_view, [], library_outputs, **private)
        timer.tick(tick, [seen_state], [progress, seen_state] + library_outputs, concurrency_limit=None,
                   show_progress="hidden", **private)
        demo.load(library_view, [], library_outputs, **private)

        register_api(service)
    return demo
