"""Following a dyno's log: `hostctl logs -f` and Logs(follow=true)."""

import time

import pytest

from hostd_client import Code, pb

# not the cgroup v2 tier: log following
pytestmark = pytest.mark.cgroup_independent


def follow(client, dyno_id, lines=0):
    """Logs with follow: a server stream of LogsResponse, with no deadline."""
    return client.follow_logs(dyno_id, lines=lines)


def texts(resp):
    return [l.text.decode() for l in resp.lines]


def test_follow_sees_new_lines_across_a_restart_and_ends_with_the_dyno(hostd, make_spec):
    c = hostd.client()
    c.start(make_spec("follow-1", command="i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done"))
    watcher = hostd.client()
    seen = []
    ended = False
    stream = follow(watcher, "follow-1")
    deadline = time.monotonic() + 20
    restarted = stopped = False
    while True:
        resp = stream.next(timeout=20)
        if resp is None:
            assert stream.status.code == Code.OK, stream.status
            ended = True
            break
        seen += texts(resp)
        ticks = [t for t in seen if t.startswith("tick ")]
        if not restarted and len(ticks) >= 3:
            c.restart("follow-1", grace=2)
            restarted = True
        elif restarted and not stopped and "Restarting" in seen \
                and "tick 1" in seen[seen.index("Restarting"):]:
            c.stop("follow-1", grace=2)
            stopped = True
        assert time.monotonic() < deadline, seen
    assert ended, "the stream did not end when the dyno stopped"
    # Lines from before and after the restart, in order, and the platform's lines.
    assert "Restarting" in seen
    before, after = seen[: seen.index("Restarting")], seen[seen.index("Restarting"):]
    assert "tick 2" in before and "tick 0" in after and "tick 1" in after
    assert "Stopping all processes with SIGTERM" in after
    assert any(t.startswith("State changed from") and t.endswith("to down") for t in after)
    ticks_before = [int(t.split()[1]) for t in before if t.startswith("tick ")]
    assert ticks_before == list(range(len(ticks_before))), "a gap or a repeat in the stream"


def test_follow_starts_with_the_last_lines_asked(hostd, make_spec):
    c = hostd.client()
    c.start(make_spec("follow-2", command="for i in 1 2 3 4 5; do echo line $i; done; sleep 1000"))
    deadline = time.monotonic() + 10
    while "line 5" not in c.log_texts("follow-2"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    kept = c.log_texts("follow-2")
    stream = follow(hostd.client(), "follow-2", lines=2)
    first = stream.next()
    assert texts(first) == kept[-2:]
    # the stream stays open: nothing more until the dyno writes again
    with pytest.raises(TimeoutError):
        stream.next(timeout=0.5)
    assert not stream.ended
    c.stop("follow-2", grace=1)


def test_a_follower_that_leaves_does_not_disturb_the_dyno_or_hostd(hostd, make_spec):
    c = hostd.client()
    c.start(make_spec("follow-3", command="while :; do echo spam; done"))
    w = hostd.client()
    assert follow(w, "follow-3").next() is not None
    w.close()
    time.sleep(0.5)
    d = c.get("follow-3")
    assert d.state == pb.DYNO_STATE_UP
    hostd.assert_serving()
    stopped = c.stop("follow-3", grace=2)
    assert stopped.state == pb.DYNO_STATE_DOWN


def test_following_an_ended_dyno_returns_its_lines_and_ends(hostd, make_spec):
    c = hostd.client()
    c.start(make_spec("follow-4", command="echo bye; exit 3"))
    c.wait_state("follow-4", [pb.DYNO_STATE_CRASHED])
    stream = follow(hostd.client(), "follow-4")
    responses = stream.rest(20)
    assert stream.status.code == Code.OK, stream.status  # it ended, with OK
    lines = [t for r in responses for t in texts(r)]
    assert "bye" in lines and "Process exited with status 3" in lines


def test_platform_lines_name_the_dyno(hostd, make_spec):
    """heroku[web.1]: State changed..., as Heroku writes them: in the API and in hostctl logs."""
    from test_hostctl import hostctl

    c = hostd.client()
    c.start(make_spec("named-1", name="web.1", command="echo hello; sleep 1000"))
    c.stop("named-1", grace=1)
    lines = c.logs("named-1").lines
    heroku = [l for l in lines if l.source == "heroku"]
    app = [l for l in lines if l.source == "app"]
    assert heroku and app
    assert {l.process for l in heroku} == {"web.1"}, {l.process for l in heroku}
    assert {l.process for l in app} == {"web.1"}
    out = hostctl(hostd, "logs", "named-1").stdout
    assert "heroku[web.1]: State changed from starting to up" in out, out
    assert "app[web.1]: hello" in out, out
    assert "heroku[hostd]" not in out
