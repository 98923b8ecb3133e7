"""Delivery assertions: in order, no duplicate, no gap but announced ones."""

from __future__ import annotations

from collections.abc import Sequence

from .gaps import Gap

#: Policies under which a server may drop messages (announcing it with a gap notice).
DROPPING_POLICIES = frozenset({"drop_oldest"})
#: Policies under which a stream may end early (the client then resumes by id).
ENDING_POLICIES = frozenset({"disconnect"})


def _show(items: Sequence[object], at: int, width: int = 3) -> str:
    low, high = max(0, at - width), min(len(items), at + width + 1)
    return ", ".join((">>" if i == at else "") + repr(items[i]) for i in range(low, high)) + (
        " ..." if high < len(items) else ""
    )


def assert_in_order(
    received: Sequence[str | Gap],
    published: Sequence[str],
    *,
    allow_gaps: bool = False,
    policy: str | None = None,
    allow_missing_tail: bool = False,
    exact_dropped_counts: bool = False,
) -> None:
    """Assert that a client received exactly ``published``, in order.

    ``received`` is what a client got, in arrival order: message ids (opaque strings),
    with :class:`~fanwire.testing.gaps.Gap` markers where the server announced a gap
    (``SSEClient.sequence()`` / ``WSClient.sequence()`` build it). ``published`` is the
    ids the client should have got, in publish order (e.g. the ids the publish calls
    returned, after the resume point); ids are never parsed.

    Rules: every received id is a published id; no id twice; ids come in publish order;
    a published id may be missing only where a gap was announced (a ``Gap`` marker right
    before the next delivered id, or at the very end). A resume gap (``kind="resume"``)
    is always accepted, and must be followed by its ``first_available`` id when it names
    one; a drop (``kind="drop"``) only if drops are allowed (``allow_gaps=True`` or
    ``policy="drop_oldest"``). Missing ids after the last
    delivered one are a failure unless ``allow_missing_tail`` (or
    ``policy="disconnect"``, whose streams end early) or a gap marker ends the sequence.
    With ``exact_dropped_counts``, a marker's ``dropped`` count must equal the number of
    ids skipped there.
    """
    if policy is not None:
        allow_gaps = allow_gaps or policy in DROPPING_POLICIES
        allow_missing_tail = allow_missing_tail or policy in ENDING_POLICIES
    position = {message_id: index for index, message_id in enumerate(published)}
    if len(position) != len(published):
        raise AssertionError("the published ids are not unique")
    ids_only = [item for item in received if not isinstance(item, Gap)]
    seen: set[str] = set()
    expected = 0  # index in `published` of the next id we expect
    pending: list[Gap] = []
    for index, item in enumerate(received):
        if isinstance(item, Gap):
            if not allow_gaps and item.kind != "resume":
                raise AssertionError(
                    f"gap notice {item.notice!r} at #{index}, but no drop is allowed here "
                    f"(policy={policy!r}): {_show(received, index)}"
                )
            pending.append(item)
            continue
        if item in seen:
            raise AssertionError(f"duplicate id {item!r} at #{index}: {_show(received, index)}")
        seen.add(item)
        if item not in position:
            raise AssertionError(
                f"id {item!r} at #{index} was never published: {_show(received, index)}"
            )
        at = position[item]
        if at < expected:
            raise AssertionError(
                f"id {item!r} at #{index} came after a later one (out of order): "
                f"{_show(received, index)}"
            )
        skipped = at - expected
        for gap in pending:
            if gap.first_available is not None and gap.first_available != item:
                raise AssertionError(
                    f"gap notice said first_available={gap.first_available!r} but the "
                    f"next id is {item!r}: {_show(received, index)}"
                )
        if skipped:
            later = set(published[expected:at]) & set(ids_only)
            if later:
                first = next(i for i in published[expected:at] if i in later)
                raise AssertionError(
                    f"id {item!r} at #{index} came before {first!r}, published earlier "
                    f"(out of order): {_show(received, index)}"
                )
            if not pending:
                raise AssertionError(
                    f"{skipped} published id(s) missing before {item!r} at #{index} "
                    f"with no gap notice (first missing: {published[expected]!r}): "
                    f"{_show(received, index)}"
                )
            if exact_dropped_counts:
                announced = sum(g.dropped or 0 for g in pending)
                if announced != skipped:
                    raise AssertionError(
                        f"gap notice(s) announced {announced} dropped but {skipped} id(s) "
                        f"are missing before {item!r}: {_show(received, index)}"
                    )
        pending = []
        expected = at + 1
    if expected < len(published) and not pending and not allow_missing_tail:
        raise AssertionError(
            f"{len(published) - expected} published id(s) never arrived after the last "
            f"delivered one ({ids_only[-1] if ids_only else None!r}); first missing: "
            f"{published[expected]!r}; received {len(ids_only)} of {len(published)}"
        )
