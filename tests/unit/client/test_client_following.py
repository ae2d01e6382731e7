"""client.following decides how a watcher follows a run: when to report, reconnect, poll or give up."""

import json

import pytest

from benchboard_client.errors import BenchmarkAPIError, NotFound, ServerUnreachable
from benchboard_client.following import FollowPolicy, RunFollower


def status(state="running", completed=0, **extra):
    return {"run_id": "r1", "status": state, "progress": completed / 2, "completed_configs": completed,
            "total_configs": 2, "current_step": None, "error": None, **extra}


class FakeClock:
    """Seconds that pass only when a test says so: no test here sleeps or races a timer."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def follower(clock=None, **policy):
    return RunFollower("r1", FollowPolicy(**policy), clock=clock or FakeClock())


def test_each_change_is_reported_once_and_repeats_are_dropped():
    watcher = follower()
    first = status(completed=1)
    assert watcher.on_message(json.dumps(first)) == first
    assert watcher.on_message(json.dumps(first)) is None
    assert watcher.on_status(dict(first)) is None
    assert watcher.on_status(status(completed=2)) == status(completed=2)


@pytest.mark.parametrize("terminal", ["completed", "failed", "cancelled"])
def test_following_ends_at_a_terminal_status(terminal):
    watcher = follower()
    watcher.on_message(json.dumps(status()))
    assert not watcher.finished
    watcher.on_message(json.dumps(status(terminal, completed=2)))
    assert watcher.finished
    assert watcher.last["status"] == terminal


def test_an_error_message_from_the_socket_means_the_run_does_not_exist():
    with pytest.raises(NotFound, match="no run with id 'r1'"):
        follower().on_message(json.dumps({"error": "no run with id 'r1'"}))


def test_a_status_whose_error_field_is_set_is_still_a_status():
    failed = status("failed", error="worker crashed")
    assert follower().on_message(json.dumps(failed)) == failed


def test_pongs_are_not_statuses():
    assert follower().on_message(json.dumps({"pong": True})) is None


def test_a_message_that_is_not_json_is_an_api_error():
    with pytest.raises(BenchmarkAPIError, match="not JSON"):
        follower().on_message("<html>")


def test_reconnects_follow_the_policy_then_fall_back_to_polling():
    watcher = follower(reconnect_delays=(0.1, 0.3))
    watcher.on_message(json.dumps(status()))
    assert watcher.after_socket_drop() == 0.1
    assert watcher.after_socket_drop() == 0.3
    assert watcher.after_socket_drop() is None


def test_a_status_over_a_new_connection_restores_the_reconnect_budget():
    watcher = follower(reconnect_delays=(0.1,))
    watcher.on_message(json.dumps(status()))
    assert watcher.after_socket_drop() == 0.1
    watcher.on_message(json.dumps(status(completed=1)))
    assert watcher.after_socket_drop() == 0.1


def test_a_server_never_reached_is_asked_by_a_status_request_at_once():
    # No reconnect delays for a wrong address: /status tells at once what is missing.
    assert follower().after_socket_drop() is None


def test_polling_a_server_never_reached_gives_up_at_once():
    error = ServerUnreachable("cannot reach server at http://127.0.0.1:9")
    with pytest.raises(ServerUnreachable):
        follower().after_unreachable(error)


def test_polling_waits_for_a_server_that_went_away_then_gives_up():
    clock = FakeClock()
    watcher = follower(clock, poll_interval=0.05, unreachable_timeout=0.2)
    watcher.on_status(status())
    error = ServerUnreachable("cannot reach server")
    assert watcher.after_unreachable(error) == 0.05
    clock.advance(0.19)
    assert watcher.after_unreachable(error) == 0.05  # still within the timeout: keep polling
    clock.advance(0.02)
    with pytest.raises(ServerUnreachable):
        watcher.after_unreachable(error)


def test_a_status_between_outages_restarts_the_unreachable_clock():
    clock = FakeClock()
    watcher = follower(clock, poll_interval=0.05, unreachable_timeout=0.2)
    watcher.on_status(status())
    error = ServerUnreachable("cannot reach server")
    watcher.after_unreachable(error)
    clock.advance(0.25)
    watcher.on_status(status(completed=1))
    assert watcher.after_unreachable(error) == 0.05
    clock.advance(0.15)
    assert watcher.after_unreachable(error) == 0.05  # the outage is counted from after the status


def test_a_lost_server_is_noticed_once_when_a_reconnect_fails_and_again_when_it_is_back():
    clock, notices = FakeClock(), []
    watcher = RunFollower("r1", FollowPolicy(reconnect_delays=(0.1, 0.3), unreachable_timeout=60), clock=clock,
                          on_notice=notices.append, server="the server at http://127.0.0.1:9")
    watcher.on_message(json.dumps(status()))
    assert watcher.after_socket_drop(ConnectionError("socket closed")) == 0.1
    assert notices == []  # a drop that reconnects at once says nothing
    assert watcher.after_socket_drop(ConnectionRefusedError("connection refused")) == 0.3
    assert notices == ["run r1: lost the connection to the server at http://127.0.0.1:9 (connection refused); "
                       "retrying for up to 60 s"]
    assert watcher.after_socket_drop(ConnectionRefusedError("connection refused")) is None
    assert watcher.after_unreachable(ServerUnreachable("cannot reach server")) == 1.0
    assert len(notices) == 1  # said once per outage
    assert watcher.on_status(status(completed=1)) is not None
    assert notices[1] == "run r1: the server at http://127.0.0.1:9 is back; following the run again"


def test_the_outage_is_counted_from_the_drop_and_the_give_up_says_how_long_it_waited():
    clock, notices = FakeClock(), []
    watcher = RunFollower("r1", FollowPolicy(reconnect_delays=(0.1,), unreachable_timeout=5), clock=clock,
                          on_notice=notices.append)
    watcher.on_message(json.dumps(status()))
    watcher.after_socket_drop()
    clock.advance(4)  # the reconnects spent part of the budget
    assert watcher.after_socket_drop() is None
    assert watcher.after_unreachable(ServerUnreachable("cannot reach server")) == 1.0
    clock.advance(1.5)
    with pytest.raises(ServerUnreachable, match=r"cannot reach server \(gave up after 5 s\)"):
        watcher.after_unreachable(ServerUnreachable("cannot reach server"))
    assert len(notices) == 1


def test_without_a_notice_callback_the_loss_is_a_logged_warning(caplog):
    watcher = follower(reconnect_delays=())
    watcher.on_status(status())
    with caplog.at_level("WARNING", logger="benchboard_client.following"):
        watcher.after_unreachable(ServerUnreachable("cannot reach server"))
    assert "lost the connection to the server" in caplog.text
