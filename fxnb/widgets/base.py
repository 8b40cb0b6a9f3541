"""Building blocks shared by the panels: the :class:`Panel` base, a confirmation bar, a message line."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import ipywidgets as w
import traitlets as t

from fxnb.errors import FxnbError
from fxnb.widgets._fmt import esc
from fxnb.widgets._style import stylesheet
from fxnb.widgets.context import Console

log = logging.getLogger("fxnb.widgets")

F = TypeVar("F", bound=Callable[..., Any])


def set_if_changed(widget: w.Widget, name: str, value: Any) -> bool:
    """Assign a trait only when the value differs: no comm message, no re-render for equal values."""
    if getattr(widget, name) != value:
        setattr(widget, name, value)
        return True
    return False


def show(widget: w.Widget, visible: bool) -> None:
    set_if_changed(widget.layout, "display", None if visible else "none")


class MessageLine(w.HTML):
    """One line of feedback under a panel's controls (what was queued, or what went wrong)."""

    kind = t.Unicode("", help="'' (hidden), 'ok', 'info' or 'error'")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("fxnb-message")

    def ok(self, text: str) -> None:
        self._set("ok", text)

    def info(self, text: str) -> None:
        self._set("info", text)

    def error(self, text: str) -> None:
        self._set("error", text)

    def clear(self) -> None:
        self._set("", "")

    def _set(self, kind: str, text: str) -> None:
        self.kind = kind
        css = {"ok": "fxnb-message-ok", "error": "fxnb-message-error"}.get(kind, "fxnb-muted")
        self.value = f'<span class="{css}" data-kind="{kind}">{esc(text)}</span>' if text else ""


def guarded(method: F) -> F:
    """Run a button/observer callback; show any exception on the panel's message line instead of losing it.

    Without this an exception in a callback goes to the kernel log, which an
    operator in Voila never sees: the click would silently do nothing.
    """

    @functools.wraps(method)
    def wrapper(self: Panel, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except FxnbError as exc:
            self.message.error(str(exc))
        except Exception as exc:  # a bug: still tell the operator, and log it
            log.exception("%s.%s failed", type(self).__name__, method.__name__)
            self.message.error(f"internal error: {exc!r}")
        return None

    return wrapper  # type: ignore[return-value]


class Panel(w.VBox):
    """Base of every panel: a titled ``VBox`` bound to a :class:`Console`.

    Subclasses implement :meth:`refresh` (re-read storage, redraw only what
    changed) and optionally :meth:`tick` (clock-driven updates that need no new
    data). Both are cheap to call when nothing changed.
    """

    css_class = "fxnb-panel"
    title_text = ""

    def __init__(self, console: Console, **kwargs: Any) -> None:
        self.console = console
        self.title = w.HTML(f'<div class="fxnb-title">{esc(self.title_text)}</div>')
        self.message = MessageLine()
        super().__init__(**kwargs)
        self.add_class("fxnb-panel")
        self.add_class(self.css_class)
        if not console.health:  # first panel on this console: know whether the monitor is alive
            console.update_health()

    def _compose(self, *body: w.Widget) -> None:
        self.children = (stylesheet(), self.title, *body, self.message)

    def refresh(self) -> None:  # pragma: no cover - abstract
        """Re-read storage and redraw what changed."""
        raise NotImplementedError

    def tick(self, now: float) -> None:
        """Clock-driven update (ages, expiry); default: nothing."""

    def live(self, period: float = 1.0, key: str | None = None) -> Any:
        """Refresh this panel on its own, about every ``period`` seconds (see :func:`fxnb.widgets.live`).

        The task is registered under ``key`` (default: the class name), so re-running
        the cell replaces the previous loop; pass distinct keys for two live panels of one class.
        """
        from fxnb.widgets.live import live

        return live(self, period=period, key=key or f"panel-{type(self).__name__}")


class ConfirmBar(w.VBox):
    """A preview plus Confirm / Cancel: nothing happens until Confirm.

    ``ask(preview_html, action)`` shows the bar; Confirm runs ``action()`` and
    hides it, Cancel just hides it. ``prefix`` names the buttons' CSS classes
    (``{prefix}-confirm`` / ``{prefix}-cancel``) so tests and browsers can find them.
    """

    pending = t.Bool(False, help="True while a preview waits for Confirm or Cancel")

    def __init__(self, prefix: str, *, confirm_label: str = "Confirm", **kwargs: Any) -> None:
        self.preview = w.HTML()
        self.preview.add_class(f"{prefix}-preview")
        self.confirm_button = w.Button(description=confirm_label, button_style="danger",
                                       tooltip="Write the command file now")
        self.confirm_button.add_class(f"{prefix}-confirm")
        self.cancel_button = w.Button(description="Cancel", tooltip="Discard; nothing is written")
        self.cancel_button.add_class(f"{prefix}-cancel")
        super().__init__([self.preview, w.HBox([self.confirm_button, self.cancel_button])], **kwargs)
        self.add_class("fxnb-confirm")
        self.add_class(f"{prefix}-confirm-bar")
        self._action: Callable[[], None] | None = None
        self.confirm_button.on_click(lambda _b: self.confirm())
        self.cancel_button.on_click(lambda _b: self.cancel())
        show(self, False)

    def ask(self, preview_html: str, action: Callable[[], None] | None, *, can_confirm: bool = True) -> None:
        """Show ``preview_html``; ``action`` runs on Confirm (``can_confirm=False`` shows the preview only)."""
        self._action = action
        self.preview.value = f'<div class="fxnb-preview">{preview_html}</div>'
        self.confirm_button.disabled = not can_confirm or action is None
        self.pending = True
        show(self, True)

    def update_preview(self, preview_html: str, *, can_confirm: bool | None = None) -> None:
        """Replace the preview text while it is shown (e.g. live prices), keeping the action."""
        set_if_changed(self.preview, "value", f'<div class="fxnb-preview">{preview_html}</div>')
        if can_confirm is not None:
            set_if_changed(self.confirm_button, "disabled", not can_confirm or self._action is None)

    def confirm(self) -> None:
        if self.confirm_button.disabled or not self.pending:
            return  # Button.click() bypasses ``disabled``; a disabled Confirm must never act
        action, self._action = self._action, None
        self._hide()
        if action is not None:
            action()

    def cancel(self) -> None:
        self._action = None
        self._hide()

    def _hide(self) -> None:
        self.pending = False
        self.preview.value = ""
        show(self, False)
