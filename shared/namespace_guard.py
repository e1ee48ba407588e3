"""The namespace guard: a namespace that opted in to the deploy guard stays in unless someone says why.

Why it exists: the deploy guard sees only namespaces carrying the opt-in label (`ADMISSION_GUARD_LABEL`,
`stagegate.kuberik.com/guard=enabled`). Removing that label switches every check off at once, so it
would be the one walk-around that makes all the others unnecessary: unlabel, deploy anything, label
again. So an UPDATE of a Namespace that removes or changes the label is refused, unless the same write
puts a non-empty reason in the annotation `stagegate.kuberik.com/unguard-reason`; allowed that way, the
answer carries a warning and a `GuardRemoved` Warning Event is recorded on the Namespace (none for a dry
run), so removing the guard is always deliberate and leaves a trace. Every other Namespace update is
allowed without reading anything.

The webhook that sends these reviews selects namespaces with an `objectSelector` on the label, which the
kube-apiserver matches against the old object as well as the new one, so it sees the label going (a
`namespaceSelector` is matched against the new object only, and would not). This module decides on the
review alone: it never does I/O.
"""

from __future__ import annotations

from shared.admission import AdmissionRequest, Decision, EventNotice, allow, deny
from shared.deploy_guard import opted_in
from shared.views import Namespace

UNGUARD_REASON_ANNOTATION = "stagegate.kuberik.com/unguard-reason"
GUARD_REMOVED_REASON = "GuardRemoved"


def namespace_decision(request: AdmissionRequest, label: tuple[str, str]) -> Decision:
    """Refuse removing the opt-in label without a reason; allow everything else.

    Raises `BadEvent` when either Namespace cannot be read (the shell then refuses: fail closed).
    """
    old = Namespace.from_raw(request.old_object, "oldObject")
    new = Namespace.from_raw(request.object, "object")
    key, value = label
    if not opted_in(old.labels, label) or opted_in(new.labels, label):
        return allow("the deploy guard's opt-in label is unchanged")
    reason = new.annotations.get(UNGUARD_REASON_ANNOTATION, "").strip()
    if not reason:
        return deny(
            f"namespace {new.name} opted in to stagegate's deploy guard ({key}={value}), and removing that "
            "label switches off every check of what runs in it; to remove it anyway, say why in the same "
            f"write with the annotation {UNGUARD_REASON_ANNOTATION} (it is recorded as a "
            f"{GUARD_REMOVED_REASON} Event)"
        )
    by = f" by {request.username}" if request.username else ""
    return allow(
        f"opt-in label removed with a reason: {reason}",
        warnings=(
            f"stagegate: namespace {new.name} is no longer guarded: deploys in it are not checked any more "
            f"({UNGUARD_REASON_ANNOTATION}: {reason})",
        ),
        events=(
            EventNotice(
                namespace=None,
                api_version="v1",
                kind="Namespace",
                name=new.name,
                uid=new.uid,
                reason=GUARD_REMOVED_REASON,
                message=f"the deploy guard's opt-in label {key}={value} was removed{by}: {reason}",
            ),
        ),
    )


def namespace_unavailable(request: AdmissionRequest, why: str) -> Decision:
    """Fail closed when the namespace guard could not decide (it reads nothing, so: a malformed object)."""
    return deny(
        f"stagegate could not check whether the update of namespace {request.key} removes the deploy "
        f"guard's opt-in label ({why}); nothing was changed"
    )
