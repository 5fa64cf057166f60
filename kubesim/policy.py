"""SubjectAccessReview policy: which user or group may do which verb on which resource.

Contract: `AccessPolicy.evaluate(...) -> Decision`. Rules are added with `allow(...)` / `deny(...)`; any
matching deny wins, else any matching allow, else `default_allow` (False unless configured). A subject is a
user name, `group:<name>` (or the `user=`/`group=` keywords). `"*"` matches anything in verb, resource,
namespace and API group. The server answers SubjectAccessReview / SelfSubjectAccessReview from it and, when a
request impersonates a user (`Impersonate-User`), authorizes that request with it like RBAC would.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rule:
    """One allow/deny rule."""

    effect: str  # "allow" | "deny"
    user: str | None
    group: str | None
    verb: str
    resource: str
    namespace: str
    api_group: str

    def matches(self, *, user: str, groups: Iterable[str], verb: str, resource: str, namespace: str | None,
                api_group: str) -> bool:
        """Whether this rule applies to the request attributes."""
        if self.user is not None and self.user not in ("*", user):
            return False
        if self.group is not None and self.group != "*" and self.group not in set(groups):
            return False
        if self.verb not in ("*", verb):
            return False
        if self.resource not in ("*", resource):
            return False
        if self.api_group not in ("*", api_group):
            return False
        return self.namespace == "*" or self.namespace == (namespace or "")


@dataclass(frozen=True)
class Decision:
    """A SubjectAccessReview answer."""

    allowed: bool
    denied: bool
    reason: str


@dataclass
class AccessPolicy:
    """Allow/deny rules for SubjectAccessReviews and impersonated requests."""

    default_allow: bool = False
    enforce_impersonation: bool = True  # authorize impersonated requests with these rules, as RBAC would
    rules: list[Rule] = field(default_factory=list)

    def allow(self, subject: str | None = None, verb: str = "*", resource: str = "*", namespace: str = "*", *,
              user: str | None = None, group: str | None = None, api_group: str = "*") -> None:
        """Allow `subject` (user, or `group:<name>`) to `verb` `resource` in `namespace` ("*" = any)."""
        self.rules.append(self._rule("allow", subject, verb, resource, namespace, user, group, api_group))

    def deny(self, subject: str | None = None, verb: str = "*", resource: str = "*", namespace: str = "*", *,
             user: str | None = None, group: str | None = None, api_group: str = "*") -> None:
        """Explicitly deny (wins over any allow)."""
        self.rules.append(self._rule("deny", subject, verb, resource, namespace, user, group, api_group))

    def clear(self, *, default_allow: bool = False) -> None:
        """Drop every rule and reset the default."""
        self.rules.clear()
        self.default_allow = default_allow

    def evaluate(self, *, user: str, groups: Iterable[str] = (), verb: str, resource: str,
                 namespace: str | None = None, api_group: str = "") -> Decision:
        """Decide one request."""
        groups = list(groups)
        attrs = {"user": user, "groups": groups, "verb": verb, "resource": resource, "namespace": namespace,
                 "api_group": api_group}
        for rule in self.rules:
            if rule.effect == "deny" and rule.matches(**attrs):  # type: ignore[arg-type]
                return Decision(False, True, f"kubesim policy denies {_who(rule)} {verb} {resource}")
        for rule in self.rules:
            if rule.effect == "allow" and rule.matches(**attrs):  # type: ignore[arg-type]
                return Decision(True, False, f"kubesim policy allows {_who(rule)} {verb} {resource}")
        if self.default_allow:
            return Decision(True, False, "kubesim policy allows by default")
        return Decision(False, False, "")

    @staticmethod
    def _rule(effect: str, subject: str | None, verb: str, resource: str, namespace: str, user: str | None,
              group: str | None, api_group: str) -> Rule:
        if subject is not None:
            if subject.startswith("group:"):
                group = subject.removeprefix("group:")
            else:
                user = subject
        if user is None and group is None:
            raise ValueError("a rule needs a user or a group (use '*' for everyone)")
        return Rule(effect, user, group, verb, resource, namespace, api_group)


def _who(rule: Rule) -> str:
    return f"user {rule.user}" if rule.user is not None else f"group {rule.group}"


__all__ = ["AccessPolicy", "Decision", "Rule"]
