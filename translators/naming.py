"""Kubernetes names derived from Clever names, ids and partitions.

`object_name` gives the TFJob / Volcano Job name: `<clever name, sanitised>-<id part>`, a
DNS-1035 label of at most 47 characters, so that the operators' derived names
`<job>-<replica type>-<index>` (Services, pods, Volcano hostnames; DNS-1035/1123 labels, at most
63 characters) still fit for the longest type `evaluator` with an index of up to 5 digits. A
backend whose controller derives longer names passes its own `max_length` (JobSet: see
translators.backends.jobset). The id part is the id itself when it is short lowercase
alphanumerics (so it can be read back), otherwise 8 of its characters plus 8 hex digits of its
SHA-256 (so it stays unique).
"""

from __future__ import annotations

import hashlib
import re

from translators.errors import FieldError, SpecError
from translators.spec import ClusterProfile

DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_LABEL_LENGTH = 63
# "-evaluator-" (11) + up to 5 index digits: what the operators append to the job name.
MAX_OBJECT_NAME_LENGTH = MAX_LABEL_LENGTH - len("-evaluator-") - 5
_ID_PART_MAX = 16
_NAME_PREFIX_FOR_NON_LETTER = "job-"


def is_dns1035_label(value: str) -> bool:
    """True when `value` is a DNS-1035 label (Service and TFJob names)."""
    return len(value) <= MAX_LABEL_LENGTH and bool(DNS1035_LABEL.match(value))


def is_dns1123_label(value: str) -> bool:
    """True when `value` is a DNS-1123 label (namespace names)."""
    return len(value) <= MAX_LABEL_LENGTH and bool(DNS1123_LABEL.match(value))


def _id_part(job_id: str) -> str:
    lowered = re.sub(r"[^a-z0-9]", "", job_id.lower())
    if lowered == job_id and 0 < len(job_id) <= _ID_PART_MAX:
        return job_id
    digest = hashlib.sha256(job_id.encode()).hexdigest()
    return lowered[:8] + digest[:8]


def object_name(name: str, job_id: str, *, max_length: int = MAX_OBJECT_NAME_LENGTH) -> str:
    """The cluster object name for a Clever job: stable, unique per id, DNS-1035, ≤ `max_length` chars."""
    id_part = _id_part(job_id)
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not base or not base[0].isalpha():
        base = (_NAME_PREFIX_FOR_NON_LETTER + base).strip("-")
    room = max_length - len(id_part) - 1
    base = base[:room].rstrip("-")
    return f"{base}-{id_part}"


def namespace_for(partition: str, profile: ClusterProfile) -> str:
    """The namespace of a partition on a cluster (profile.namespace_map, else the partition)."""
    namespace = profile.namespace_map.get(partition, partition)
    if not isinstance(namespace, str) or not is_dns1123_label(namespace):
        raise SpecError(
            f"partition {partition!r} is not a valid Kubernetes namespace on cluster {profile.id!r}",
            fields=[FieldError("partition", "must map to a DNS-1123 label: lowercase letters, digits "
                                            "and '-', starting and ending with a letter or digit, "
                                            "at most 63 characters")],
        )
    return namespace
