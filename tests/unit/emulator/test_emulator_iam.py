"""The IAM evaluator: parsing, wildcard semantics, variables, conditions, combination."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotnotify.contract import TopicScheme, iot_arn
from iotnotify.policies import (
    publisher_policy,
    subscriber_ceiling_policy,
    subscriber_session_policy,
)
from iotnotify_emulator.iam import (
    Decision,
    Policy,
    PolicyError,
    _compile,
    action_matches,
    evaluate,
    resource_matches,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
SCHEME = TopicScheme("app", "dev")


def arn(kind: str, name: str) -> str:
    return iot_arn(REGION, ACCOUNT, kind, name)


def allow(action: str | list[str], resource: str | list[str], **extra: object) -> Policy:
    return Policy.parse(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource, **extra}],
        },
        name="p",
    )


# --- parsing -----------------------------------------------------------------


def test_parse_accepts_json_text_and_single_statement_object() -> None:
    doc = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": {"Sid": "S", "Effect": "Deny", "NotAction": "iot:*", "Resource": "*"},
        }
    )
    policy = Policy.parse(doc, name="mine")
    assert policy.name == "mine"
    (statement,) = policy.statements
    assert statement.sid == "S"
    assert statement.effect == "Deny"
    assert statement.negated_actions
    assert statement.actions == ("iot:*",)


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        [],
        {},
        {"Statement": []},
        {
            "Version": "2020-01-01",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        },
        {"Statement": [{"Effect": "allow", "Action": "*", "Resource": "*"}]},
        {"Statement": [{"Effect": "Allow", "Resource": "*"}]},
        {"Statement": [{"Effect": "Allow", "Action": "*"}]},
        {"Statement": [{"Effect": "Allow", "Action": "*", "NotAction": "x:y", "Resource": "*"}]},
        {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "NotResource": "*"}]},
        {"Statement": [{"Effect": "Allow", "Action": [], "Resource": "*"}]},
        {"Statement": [{"Effect": "Allow", "Action": "Connect", "Resource": "*"}]},
        {"Statement": [{"Effect": "Allow", "Action": 3, "Resource": "*"}]},
        {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Principal": "*"}]},
        {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Extra": 1}]},
        {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": []}]},
        {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"A": 1}}]},
        {"Statement": ["x"]},
        {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}], "Foo": 1},
    ],
)
def test_parse_rejects_malformed_documents(document: object) -> None:
    with pytest.raises(PolicyError):
        Policy.parse(document if isinstance(document, str) else json.dumps(document))


def test_the_product_policies_parse() -> None:
    for doc in (
        subscriber_session_policy(SCHEME, "alice", region=REGION, account=ACCOUNT),
        subscriber_ceiling_policy(SCHEME, region=REGION, account=ACCOUNT),
        publisher_policy(SCHEME, region=REGION, account=ACCOUNT),
    ):
        assert Policy.parse(doc).statements


# --- actions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("iot:*", "iot:Connect", True),
        ("iot:connect", "iot:Connect", True),
        ("IOT:CONNECT", "iot:Connect", True),
        ("iot:Conn?ct", "iot:Connect", True),
        ("iot:Conn?ct", "iot:Conect", False),
        ("*", "iot:Publish", True),
        ("iot:Publish", "iot:RetainPublish", False),
        ("iot:*Publish", "iot:RetainPublish", True),
        ("s3:*", "iot:Publish", False),
    ],
)
def test_action_matching(pattern: str, action: str, expected: bool) -> None:
    assert action_matches(pattern, action) is expected


# --- resources ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "resource", "expected"),
    [
        (arn("topic", "a/*"), arn("topic", "a/b/c/d"), True),
        (arn("topic", "a/*"), arn("topic", "a"), False),
        (arn("topic", "a/?"), arn("topic", "a/b"), True),
        (arn("topic", "a/?"), arn("topic", "a/bc"), False),
        (arn("topicfilter", "a/+"), arn("topicfilter", "a/+"), True),
        (arn("topicfilter", "a/+"), arn("topicfilter", "a/b"), False),
        (arn("topicfilter", "a/#"), arn("topicfilter", "a/b/c"), False),
        (arn("topicfilter", "a/#"), arn("topicfilter", "a/#"), True),
        (arn("topic", "$aws/x"), arn("topic", "$aws/x"), True),
        (arn("topic", "a.b"), arn("topic", "aXb"), False),
        (arn("topic", "a/Notifications"), arn("topic", "a/notifications"), False),
        (arn("client", "alice.*"), arn("client", "alice.x"), True),
        (arn("client", "alice.*"), arn("client", "alice-x"), False),
        (arn("client", "*.*"), arn("client", "nodot"), False),
        ("arn:aws:iot:*:123456789012:topic/a", arn("topic", "a"), True),
        ("arn:aws:iot:*:topic/a", arn("topic", "a"), False),
        ("arn:aws:iot:us-east-1:*:*", arn("topic", "a:b/c"), True),
        (arn("topic", "a:*"), arn("topic", "a:b:c"), True),
        ("*", arn("client", "x"), True),
        (arn("topic", "a"), "arn:aws:iot:eu-west-1:123456789012:topic/a", False),
    ],
)
def test_resource_matching(pattern: str, resource: str, expected: bool) -> None:
    assert resource_matches(pattern, resource) is expected


_TOPIC_CHARS = st.text(
    alphabet=st.sampled_from(string.ascii_letters + string.digits + "/+#$.^()[]{}|\\-_:?*"),
    max_size=30,
)
_LITERAL_CHARS = st.text(
    alphabet=st.sampled_from(string.ascii_letters + string.digits + "/+#$.^()[]{}|\\-_:"),
    max_size=30,
)


@given(_LITERAL_CHARS, _TOPIC_CHARS)
def test_a_pattern_without_wildcards_matches_only_itself(name: str, other: str) -> None:
    pattern = arn("topic", name)
    assert resource_matches(pattern, pattern)
    assert resource_matches(pattern, arn("topic", other)) is (other == name)


@given(_LITERAL_CHARS, _LITERAL_CHARS)
def test_star_suffix_matches_exactly_the_prefixed_names(prefix: str, rest: str) -> None:
    pattern = arn("topic", prefix + "*")
    assert resource_matches(pattern, arn("topic", prefix + rest))
    assert resource_matches(pattern, arn("topic", rest)) is rest.startswith(prefix)


@given(_LITERAL_CHARS, st.sampled_from(list("+#$.^()[]{}|\\")))
def test_mqtt_and_regex_characters_are_literal(name: str, special: str) -> None:
    pattern = arn("topicfilter", name + special)
    assert resource_matches(pattern, arn("topicfilter", name + special))
    assert not resource_matches(pattern, arn("topicfilter", name + "x"))
    assert not resource_matches(pattern, arn("topicfilter", name + special + "x"))


@given(_LITERAL_CHARS)
def test_question_mark_matches_exactly_one_character(name: str) -> None:
    pattern = arn("topic", name + "?")
    assert not resource_matches(pattern, arn("topic", name))
    assert resource_matches(pattern, arn("topic", name + "/"))
    assert not resource_matches(pattern, arn("topic", name + "ab"))


# --- variables ---------------------------------------------------------------


_GLOB_TEXT = st.text(alphabet="ab:/*?\n", max_size=12)


@given(pattern=_GLOB_TEXT, value=st.text(alphabet="ab:/*?\n", max_size=12), arn_like=st.booleans())
def test_wildcard_matching_without_a_regex_agrees_with_the_regex(
    pattern: str, value: str, arn_like: bool
) -> None:
    # Both sides ARN-shaped or not: the ARN rule (wildcards stop at ':' in
    # the first five segments) is the delicate part.
    if arn_like:
        pattern, value = "arn:" + pattern, "arn:" + value
    expected = _compile(((pattern, False),), False, arn_like).fullmatch(value) is not None
    assert resource_matches(pattern, value) is expected


def test_per_user_session_policies_compile_no_pattern() -> None:
    # Session policies name arn:aws:iot:*:*:client/<user>.* and the like; a
    # compiled regex per user stayed cached (~1.3 KB per connected user).
    ceiling = Policy.parse(
        subscriber_ceiling_policy(SCHEME, region=REGION, account=ACCOUNT), name="c"
    )
    _compile.cache_clear()
    after_first = 0  # the actions and the shared ceiling compile once, not per user
    for index in range(20):
        user = f"user{index}"
        session = Policy.parse(
            subscriber_session_policy(SCHEME, user, region=REGION, account=ACCOUNT), name="s"
        )
        for action, resource in (
            ("iot:Connect", arn("client", f"{user}.tab1")),
            ("iot:Subscribe", arn("topicfilter", str(SCHEME.user_notifications(user)))),
            ("iot:Receive", arn("topic", str(SCHEME.user_notifications(user)))),
        ):
            decision = evaluate(
                action, resource, identity_policies=[ceiling], session_policies=[session]
            )
            assert decision.allowed, (action, resource, decision.reason)
        assert not evaluate(
            "iot:Connect",
            arn("client", "someone-else.tab1"),
            identity_policies=[ceiling],
            session_policies=[session],
        ).allowed
        after_first = after_first or _compile.cache_info().currsize
    assert _compile.cache_info().currsize == after_first


def test_client_id_variable_is_substituted() -> None:
    policy = allow("iot:Subscribe", arn("topicfilter", "t/${iot:ClientId}"))
    ctx = {"iot:ClientId": "alice.1"}
    assert evaluate(
        "iot:Subscribe", arn("topicfilter", "t/alice.1"), identity_policies=[policy], context=ctx
    ).allowed
    assert not evaluate(
        "iot:Subscribe", arn("topicfilter", "t/bob.1"), identity_policies=[policy], context=ctx
    ).allowed


def test_variable_values_are_literal_not_wildcards() -> None:
    policy = allow("iot:Subscribe", arn("topicfilter", "t/${iot:ClientId}"))
    ctx = {"iot:ClientId": "*"}
    assert not evaluate(
        "iot:Subscribe", arn("topicfilter", "t/anything"), identity_policies=[policy], context=ctx
    ).allowed
    assert evaluate(
        "iot:Subscribe", arn("topicfilter", "t/*"), identity_policies=[policy], context=ctx
    ).allowed


def test_missing_variable_makes_the_pattern_match_nothing() -> None:
    policy = allow("iot:Connect", arn("client", "${iot:Connection.Thing.ThingName}"))
    decision = evaluate(
        "iot:Connect",
        arn("client", "${iot:Connection.Thing.ThingName}"),
        identity_policies=[policy],
        context={"iot:ClientId": "x"},
    )
    assert not decision.allowed


def test_thing_name_variable_is_substituted_when_in_context() -> None:
    policy = allow("iot:Connect", arn("client", "${iot:Connection.Thing.ThingName}"))
    ctx = {"iot:Connection.Thing.ThingName": "dev1"}
    assert evaluate(
        "iot:Connect", arn("client", "dev1"), identity_policies=[policy], context=ctx
    ).allowed


def test_special_variables_are_literal_characters() -> None:
    policy = allow("iot:Publish", arn("topic", "a${*}b${?}c${$}"))
    assert evaluate("iot:Publish", arn("topic", "a*b?c$"), identity_policies=[policy]).allowed
    assert not evaluate("iot:Publish", arn("topic", "aXbYc$"), identity_policies=[policy]).allowed


def test_variables_are_literal_text_without_version_2012() -> None:
    policy = Policy.parse(
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "iot:Connect",
                    "Resource": arn("client", "${iot:ClientId}"),
                }
            ]
        }
    )
    ctx = {"iot:ClientId": "c1"}
    assert not evaluate(
        "iot:Connect", arn("client", "c1"), identity_policies=[policy], context=ctx
    ).allowed
    assert evaluate(
        "iot:Connect", arn("client", "${iot:ClientId}"), identity_policies=[policy], context=ctx
    ).allowed


def test_not_resource_with_missing_variable_does_not_apply() -> None:
    policy = Policy.parse(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "iot:*", "NotResource": arn("topic", "${nope}")}
            ],
        }
    )
    assert not evaluate("iot:Publish", arn("topic", "x"), identity_policies=[policy]).allowed


# --- conditions --------------------------------------------------------------


def test_string_equals_condition_on_a_context_key() -> None:
    policy = allow("iot:Connect", "*", Condition={"StringEquals": {"iot:ClientId": ["a", "b"]}})
    assert evaluate(
        "iot:Connect", arn("client", "a"), identity_policies=[policy], context={"iot:ClientId": "a"}
    ).allowed
    assert not evaluate(
        "iot:Connect", arn("client", "c"), identity_policies=[policy], context={"iot:ClientId": "c"}
    ).allowed


def test_string_like_and_not_like_conditions() -> None:
    like = allow("iot:Connect", "*", Condition={"StringLike": {"iot:clientid": "al*"}})
    not_like = allow("iot:Connect", "*", Condition={"StringNotLike": {"iot:ClientId": "al*"}})
    ctx = {"iot:ClientId": "alice.1"}
    res = arn("client", "alice.1")
    assert evaluate("iot:Connect", res, identity_policies=[like], context=ctx).allowed
    assert not evaluate("iot:Connect", res, identity_policies=[not_like], context=ctx).allowed


def test_arn_like_condition() -> None:
    policy = allow(
        "iot:Connect", "*", Condition={"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/r"}}
    )
    ctx = {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/r"}
    assert evaluate("iot:Connect", arn("client", "x"), identity_policies=[policy], context=ctx)


def test_unsupported_operator_or_unknown_key_never_grants() -> None:
    ctx = {"iot:ClientId": "a"}
    for condition in (
        {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        {"StringEquals": {"aws:SourceVpc": "vpc-1"}},
        {"StringEqualsIfExists": {"aws:SourceVpc": "vpc-1"}},
        {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}},
    ):
        policy = allow("iot:Connect", "*", Condition=condition)
        decision = evaluate(
            "iot:Connect", arn("client", "a"), identity_policies=[policy], context=ctx
        )
        assert not decision.allowed, condition


def test_deny_with_unevaluable_condition_fails_closed() -> None:
    deny = Policy.parse(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "D",
                    "Effect": "Deny",
                    "Action": "iot:*",
                    "Resource": "*",
                    "Condition": {"StringNotEquals": {"aws:SourceVpc": "vpc-1"}},
                }
            ],
        },
        name="guard",
    )
    decision = evaluate(
        "iot:Connect", arn("client", "a"), identity_policies=[allow("iot:*", "*"), deny]
    )
    assert not decision.allowed
    assert decision.policy == "guard"
    assert "failing closed" in decision.reason


def test_deny_with_false_condition_does_not_apply() -> None:
    deny = Policy.parse(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Action": "iot:*",
                    "Resource": "*",
                    "Condition": {"StringEquals": {"iot:ClientId": "evil"}},
                }
            ],
        }
    )
    assert evaluate(
        "iot:Connect",
        arn("client", "a"),
        identity_policies=[allow("iot:*", "*"), deny],
        context={"iot:ClientId": "good"},
    ).allowed


# --- combination ---------------------------------------------------------------


def test_nothing_is_allowed_without_policies() -> None:
    decision = evaluate("iot:Connect", arn("client", "a"), identity_policies=[])
    assert decision == Decision(False, "no allow in identity policies", None)


def test_explicit_deny_wins_over_allow() -> None:
    deny = Policy.parse(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "NoAdmin",
                    "Effect": "Deny",
                    "Action": "iot:Publish",
                    "Resource": arn("topic", "admin/*"),
                }
            ],
        },
        name="guard",
    )
    decision = evaluate(
        "iot:Publish", arn("topic", "admin/x"), identity_policies=[allow("iot:*", "*"), deny]
    )
    assert not decision.allowed
    assert decision.reason == "explicit deny in guard/NoAdmin"
    assert decision.policy == "guard"


def test_deny_in_session_policy_wins() -> None:
    deny = Policy.parse(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}],
        },
        name="session",
    )
    decision = evaluate(
        "iot:Connect",
        arn("client", "a"),
        identity_policies=[allow("iot:*", "*")],
        session_policies=[allow("iot:*", "*"), deny],
    )
    assert not decision.allowed
    assert decision.reason.startswith("explicit deny in session/")


def test_not_action_allows_everything_else() -> None:
    policy = Policy.parse(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "NotAction": "iot:Publish", "Resource": "*"}],
        }
    )
    assert evaluate("iot:Connect", arn("client", "a"), identity_policies=[policy]).allowed
    assert not evaluate("iot:Publish", arn("topic", "a"), identity_policies=[policy]).allowed


def test_not_resource_allows_everything_else() -> None:
    policy = Policy.parse(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "iot:*", "NotResource": [arn("topic", "secret/*")]}
            ],
        }
    )
    assert evaluate("iot:Receive", arn("topic", "public/a"), identity_policies=[policy]).allowed
    assert not evaluate("iot:Receive", arn("topic", "secret/a"), identity_policies=[policy]).allowed


def test_session_policy_only_narrows() -> None:
    identity = [Policy.parse(subscriber_ceiling_policy(SCHEME, region=REGION, account=ACCOUNT))]
    session = [
        Policy.parse(
            subscriber_session_policy(SCHEME, "alice", region=REGION, account=ACCOUNT),
            name="alice-session",
        )
    ]
    own = str(SCHEME.user_notifications("alice"))
    bob = str(SCHEME.user_notifications("bob"))

    def check(action: str, resource: str) -> Decision:
        return evaluate(action, resource, identity_policies=identity, session_policies=session)

    assert check("iot:Connect", arn("client", "alice.1")).allowed
    assert not check("iot:Connect", arn("client", "bob.1")).allowed
    assert not check("iot:Connect", arn("client", "alice-x.1")).allowed
    assert check("iot:Subscribe", arn("topicfilter", own)).allowed
    assert not check("iot:Subscribe", arn("topicfilter", bob)).allowed
    assert not check("iot:Subscribe", arn("topicfilter", "app/dev/user/+/notifications")).allowed
    assert check("iot:Receive", arn("topic", own)).allowed
    assert not check("iot:Receive", arn("topic", bob)).allowed
    denied = check("iot:Publish", arn("topic", own))
    assert not denied.allowed
    assert denied.reason == "no allow in identity policies"


def test_session_policy_cannot_grant_beyond_identity() -> None:
    decision = evaluate(
        "iot:Publish",
        arn("topic", "x"),
        identity_policies=[allow("iot:Receive", "*")],
        session_policies=[allow("iot:*", "*")],
    )
    assert not decision.allowed


def test_no_allow_in_session_policy_is_reported() -> None:
    decision = evaluate(
        "iot:Publish",
        arn("topic", "x"),
        identity_policies=[allow("iot:*", "*")],
        session_policies=[allow("iot:Receive", "*")],
    )
    assert not decision.allowed
    assert decision.reason == "no allow in session policy p"


def test_allow_reason_names_both_policies() -> None:
    decision = evaluate(
        "iot:Publish",
        arn("topic", "x"),
        identity_policies=[allow("iot:*", "*")],
        session_policies=[allow("iot:Publish", "*")],
    )
    assert decision.allowed
    assert "session" in decision.reason


# --- condition keys the emulator supplies (issue 15 section 2) -----------------------


def _connect_allowed(condition: dict[str, object], ctx: dict[str, object]) -> bool:
    policy = allow("iot:Connect", "*", Condition=condition)
    return evaluate(
        "iot:Connect",
        arn("client", "a"),
        identity_policies=[policy],
        context=ctx,  # type: ignore[arg-type]
    ).allowed


def test_connect_attributes_follow_the_aws_iot_policy_examples() -> None:
    """AWS IoT developer guide, "Connect policy examples" / "Retained message
    policy examples": ForAllValues:StringEquals on iot:ConnectAttributes."""
    persistent_only = {
        "ForAllValues:StringEquals": {"iot:ConnectAttributes": ["PersistentConnect"]}
    }
    no_persistent = {
        "ForAllValues:StringNotEquals": {"iot:ConnectAttributes": ["PersistentConnect"]}
    }
    any_will = {"ForAnyValue:StringEquals": {"iot:ConnectAttributes": ["LastWill"]}}
    plain: dict[str, object] = {"iot:ConnectAttributes": ()}
    persistent: dict[str, object] = {"iot:ConnectAttributes": ("PersistentConnect",)}
    both: dict[str, object] = {"iot:ConnectAttributes": ("PersistentConnect", "LastWill")}
    assert _connect_allowed(persistent_only, plain)
    assert _connect_allowed(persistent_only, persistent)
    assert not _connect_allowed(persistent_only, both)
    assert _connect_allowed(no_persistent, plain)
    assert not _connect_allowed(no_persistent, persistent)
    assert _connect_allowed(any_will, both)
    assert not _connect_allowed(any_will, plain)


def test_source_ip_conditions_are_evaluated() -> None:
    inside = {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "127.0.0.1/32"]}}
    outside = {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}
    assert _connect_allowed(inside, {"aws:SourceIp": "127.0.0.1"})
    assert _connect_allowed(inside, {"aws:SourceIp": "10.1.2.3"})
    assert not _connect_allowed(inside, {"aws:SourceIp": "192.0.2.1"})
    assert _connect_allowed(outside, {"aws:SourceIp": "192.0.2.1"})
    assert not _connect_allowed(outside, {"aws:SourceIp": "10.9.9.9"})
    assert _connect_allowed({"IpAddress": {"aws:SourceIp": "::1/128"}}, {"aws:SourceIp": "::1"})


def test_missing_modeled_keys_follow_iams_rules() -> None:
    """IAM user guide, "Condition operators": a missing key does not match,
    except for negated operators and IfExists; Null tests presence."""
    ctx: dict[str, object] = {"iot:ClientId": "a"}
    assert not _connect_allowed({"StringEquals": {"aws:username": "bob"}}, ctx)
    assert _connect_allowed({"StringNotEquals": {"aws:username": "bob"}}, ctx)
    assert _connect_allowed({"StringEqualsIfExists": {"aws:username": "bob"}}, ctx)
    assert _connect_allowed({"Null": {"aws:username": "true"}}, ctx)
    assert not _connect_allowed({"Null": {"aws:username": "false"}}, ctx)
    assert _connect_allowed({"Null": {"iot:ClientId": "false"}}, ctx)


def test_aws_username_policy_variable() -> None:
    policy = allow("iot:Publish", arn("topic", "users/${aws:username}/*"))

    def allowed(topic: str, ctx: dict[str, object]) -> bool:
        return evaluate(
            "iot:Publish",
            arn("topic", topic),
            identity_policies=[policy],
            context=ctx,  # type: ignore[arg-type]
        ).allowed

    assert allowed("users/bob/x", {"aws:username": "bob"})
    assert not allowed("users/alice/x", {"aws:username": "bob"})
    # A role session has no aws:username: the pattern matches nothing
    assert not allowed("users/bob/x", {})
