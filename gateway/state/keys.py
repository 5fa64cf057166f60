"""Every Redis key the gateway writes, in one place, hash-tagged for Redis Cluster.

A Redis Cluster keeps a multi-key command or script to keys of one slot, and a key's slot is that of
its hash tag (the text between the first `{` and the next `}`; the prefix stays outside the braces).
The tags are chosen so that every atomic step (each is one Lua script, `gateway.state.base`) stays in
one slot and the load still spreads:

- `{<cluster>/<partition>}`: a partition's jobs (records and read model), its indexes, its name claims,
  the jobs' locks and tombstones. Every change of a job (create, PATCH, DELETE, a status write, a
  rebuild) touches only its own partition's keys, in one slot; partitions spread over the nodes. A
  LIST is one partition: its index and its jobs' hashes are read from one node.
- `{<cluster>}`: what the watch of one cluster keeps (heartbeat, resume points, last failures).
- `{lease:<name>}`, `{outbox}`, `{phases}`, `{writes:<user>}`, `{partitions:<cluster>}`: each used alone.

No script or transaction crosses two tags in cluster mode. The operations that write under two tags:
a queued create or delete (its record is stored first, then the outbox entry is added, as two steps,
because the record is the truth and the entry only wakes the worker, which re-reads the record), and a
status write that changes a job's phase: outside cluster mode its script also appends the change to
`{phases}` (one node: the tags do not matter there, and the append is atomic with the write); in
cluster mode the script returns the change and its writer appends it right after (a crash between the
two loses that one notification, never the status). Reads that
combine tags (a status refresh reading the watch's last failures) are separate commands.

Key layout under `redis.keyPrefix` P (default `cg:`):

    P{c/p}:job:<id>          hash: the job's record and read model (see gateway.state.views)
    P{c/p}:idx               sorted set id → creation time (ms): the partition's jobs
    P{c/p}:own:<owner>       sorted set id → creation time (ms): one owner's jobs there
    P{c/p}:names             hash name → id: the unique-name claims of the partition
    P{c/p}:gone:<id>         tombstone of a job deleted through the API (TTL): no rebuild from late events
    P{c/p}:lock:<id>         the one-writer lock of a job (random token, TTL, renewed while held)
    P{c/p}:archived          sorted set id → when it was archived (epoch s): finished jobs whose cluster
                             object is gone, kept until retention.finishedJobsDays (gateway.state.jobs)
    P{c/p}:complete          the partition's completeness marker: Redis holds every job of the partition
                             (written after a complete relist; missing = lost, see gateway.state.jobs)
    P{c/p}:ver               the partition's list version: a token never used before, written by every
                             change of a job's answer or of the indexes (replicas' LIST caches check it)
    P{c}:watchbeat           when the cluster's watch last knew Redis to be current (epoch seconds)
    P{c}:generation          the watch's last complete relist of the cluster (its marker)
    P{c}:partitions          set: every partition ever marked complete (lost vs never used)
    P{c}:rv:<what>           last resourceVersion the watch of jobs/pods saw
    P{c}:lastfail            hash id → the last pod failure the watch saw for the job
    P{lease:<name>}          lease holder (SET NX PX)
    P{phases}                stream of phase changes for the webhooks; one consumer group per hook
                             (gateway.state.phases; appended by the status write's own script except in
                             cluster mode, where the writer appends right after it)
    P{outbox}                stream of creates/deletes not yet accepted by a cluster; group `workers`
    P{writes:<user>}:<minute> the user's writes in that minute
    P{partitions:<c>}        set: the partitions of cluster c that ever had a job (gateway.state.partitions)
    Pauth:sar:<digest>       cached SubjectAccessReview answers (gateway.auth.policy; single-key)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix (which must not contain `{` or `}`: it would change the hash tags)."""

    prefix: str

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError("redis.keyPrefix must not contain '{' or '}' (they delimit Redis Cluster hash tags)")

    # ----- one partition (tag {cluster/partition})

    def partition_tag(self, cluster: str, partition: str) -> str:
        """The prefix of every key of one partition."""
        return f"{self.prefix}{{{cluster}/{partition}}}:"

    def job(self, cluster: str, partition: str, job_id: str) -> str:
        """The job's hash."""
        return f"{self.partition_tag(cluster, partition)}job:{job_id}"

    def index(self, cluster: str, partition: str) -> str:
        """The partition's jobs by creation time."""
        return f"{self.partition_tag(cluster, partition)}idx"

    def owner(self, cluster: str, partition: str, owner: str) -> str:
        """One owner's jobs in the partition by creation time."""
        return f"{self.partition_tag(cluster, partition)}own:{owner}"

    def names(self, cluster: str, partition: str) -> str:
        """The partition's name claims."""
        return f"{self.partition_tag(cluster, partition)}names"

    def gone(self, cluster: str, partition: str, job_id: str) -> str:
        """Tombstone of a deleted job."""
        return f"{self.partition_tag(cluster, partition)}gone:{job_id}"

    def lock(self, cluster: str, partition: str, job_id: str) -> str:
        """The job's one-writer lock."""
        return f"{self.partition_tag(cluster, partition)}lock:{job_id}"

    def archived(self, cluster: str, partition: str) -> str:
        """The partition's archived jobs by when they were archived."""
        return f"{self.partition_tag(cluster, partition)}archived"

    def complete(self, cluster: str, partition: str) -> str:
        """The partition's completeness marker."""
        return f"{self.partition_tag(cluster, partition)}complete"

    def version(self, cluster: str, partition: str) -> str:
        """The partition's list version."""
        return f"{self.partition_tag(cluster, partition)}ver"

    # ----- one cluster's watch (tag {cluster})

    def cluster_tag(self, cluster: str) -> str:
        """The prefix of the watch keys of one cluster."""
        return f"{self.prefix}{{{cluster}}}:"

    def heartbeat(self, cluster: str) -> str:
        """When the cluster's watch last knew Redis to be current."""
        return f"{self.cluster_tag(cluster)}watchbeat"

    def resource_version(self, cluster: str, what: str) -> str:
        """Where the watch of `what` (jobs, pods) got to."""
        return f"{self.cluster_tag(cluster)}rv:{what}"

    def last_failures(self, cluster: str) -> str:
        """The last pod failure seen per job of the cluster."""
        return f"{self.cluster_tag(cluster)}lastfail"

    def generation(self, cluster: str) -> str:
        """The cluster's marker: the watch's last complete relist."""
        return f"{self.cluster_tag(cluster)}generation"

    def marked_partitions(self, cluster: str) -> str:
        """The partitions of the cluster ever marked complete."""
        return f"{self.cluster_tag(cluster)}partitions"

    # ----- used alone

    def lease(self, name: str) -> str:
        """A lease's holder."""
        return f"{self.prefix}{{lease:{name}}}"

    @property
    def outbox(self) -> str:
        """The outbox stream."""
        return f"{self.prefix}{{outbox}}"

    @property
    def phases(self) -> str:
        """The stream of phase changes the webhooks deliver."""
        return f"{self.prefix}{{phases}}"

    def writes(self, user: str, minute: int) -> str:
        """The user's write counter of one minute."""
        return f"{self.prefix}{{writes:{user}}}:{minute}"

    def partitions(self, cluster: str) -> str:
        """The partitions of a cluster that ever had a job."""
        return f"{self.prefix}{{partitions:{cluster}}}"
