# firmware/alarm.py on MicroPython with fake Pin/PWM that log state changes with timestamps.
import micropython

import alarm
from alarm import Alarm
from fake_outputs import Clock, FakeOutPin, FakePWM


def make(record=True):
    clk = Clock()
    buz = FakePWM(clk, "buz", record)
    led = FakeOutPin(clk, "led", record)
    vib = FakeOutPin(clk, "vib", record)
    return clk, buz, led, vib, Alarm(buz, led, vib)


def run(clk, a, until, step=10):
    while clk.now < until:
        clk.now += step
        a.tick(clk.now)


def test_idle_is_silent():
    clk, buz, led, vib, a = make()
    run(clk, a, 5000)
    assert clk.log == []
    assert a.level() == alarm.NONE and a.active() == -1


def test_output_starts_on_first_tick_after_raise():
    clk, buz, led, vib, a = make()
    run(clk, a, 100)
    a.raise_(alarm.HIGH, alarm.FALL)
    assert buz.sounding() == 0 and led.value() == 0, "raise_ itself touches no output"
    clk.now = 105
    a.tick(clk.now)
    assert buz.sounding() == 1000 and led.value() == 1 and vib.value() == 1
    assert (105, "buz", 1000) in clk.log
    assert a.level() == alarm.HIGH


def test_high_priority_burst_timing():
    clk, buz, led, vib, a = make()
    a.raise_(alarm.HIGH, alarm.FALL)
    clk.now = 0
    a.tick(0)
    run(clk, a, 6000, step=5)
    on = [t for (t, n, v) in clk.log if n == "buz" and v]
    # ten pulses in the first burst, the next burst after the 2.5 s pause
    assert on[:5] == [0, 250, 500, 900, 1150], on[:10]
    assert on[5] == 1700, "second 3 + 2 after the 400 ms pause"
    assert len([t for t in on if t < 3000]) == 10, on
    period = on[10] - on[0]
    assert period == 5500, period
    offs = [t for (t, n, v) in clk.log if n == "buz" and not v]
    assert offs[0] == 150


def test_ack_silences_buzzer_and_vibration_led_stays():
    clk, buz, led, vib, a = make()
    a.raise_(alarm.HIGH, alarm.OVERLOAD)
    run(clk, a, 60)
    assert buz.sounding()
    a.ack()
    clk.now += 10
    a.tick(clk.now)
    t_ack = clk.now
    assert buz.sounding() == 0 and vib.value() == 0
    run(clk, a, 20000)
    assert not [e for e in clk.log if e[0] > t_ack and e[1] in ("buz", "vib") and e[2]], "silent after ack"
    assert led.value() == 1, "overload LED stays on while the condition is raised"
    assert a.level() == alarm.NONE and a.active() == alarm.OVERLOAD
    a.clear(alarm.OVERLOAD)
    clk.now += 10
    a.tick(clk.now)
    assert led.value() == 0 and a.active() == -1


def test_high_preempts_low_and_low_resumes():
    clk, buz, led, vib, a = make()
    a.raise_(alarm.LOW, alarm.RETIGHTEN)
    run(clk, a, 50)
    assert buz.sounding() == 660
    a.raise_(alarm.HIGH, alarm.FALL)
    clk.now += 10
    a.tick(clk.now)
    assert buz.sounding() == 1000, "the high alarm sounds on the next tick"
    assert a.active() == alarm.FALL
    run(clk, a, 3000)
    a.clear(alarm.FALL)
    clk.now += 10
    a.tick(clk.now)
    assert a.active() == alarm.RETIGHTEN and buz.sounding() == 660, "low resumes from its start"


def test_acked_high_lets_new_low_sound_and_reraise_sounds_again():
    clk, buz, led, vib, a = make()
    a.raise_(alarm.HIGH, alarm.FALL)
    run(clk, a, 20)
    a.ack()
    a.raise_(alarm.LOW, alarm.SENSOR_FAULT)
    clk.now += 10
    a.tick(clk.now)
    assert a.level() == alarm.LOW and buz.sounding() == 660
    a.raise_(alarm.HIGH, alarm.FALL)           # a second fall
    clk.now += 10
    a.tick(clk.now)
    assert a.level() == alarm.HIGH and buz.sounding() == 1000


def test_cues_are_immediate_and_short():
    clk, buz, led, vib, a = make()
    run(clk, a, 100)
    a.cue(alarm.CUE_OVER)
    clk.now = 101
    a.tick(101)
    assert buz.sounding() == 2000 and vib.value() == 1
    run(clk, a, 600)
    assert buz.sounding() == 0 and vib.value() == 0 and led.value() == 0
    a.cue(alarm.CUE_UNDER)
    clk.now += 1
    a.tick(clk.now)
    assert vib.value() == 1 and buz.sounding() == 0


def test_cue_over_low_alarm_then_low_continues_and_dropped_under_high():
    clk, buz, led, vib, a = make()
    a.raise_(alarm.LOW, alarm.RETIGHTEN)
    run(clk, a, 1000)
    a.cue(alarm.CUE_UNDER)
    clk.now += 10
    a.tick(clk.now)
    assert vib.value() == 1
    run(clk, a, clk.now + 300)
    assert vib.value() == 0
    a.raise_(alarm.HIGH, alarm.FALL)
    run(clk, a, clk.now + 200)                 # inside the first 1 kHz pulse's gap or pulse
    a.cue(alarm.CUE_OVER)
    clk.now += 10
    a.tick(clk.now)
    assert buz.sounding() in (0, 1000), "no cue tone over a high alarm"
    assert a._cue == -1


def test_tick_does_not_allocate():
    clk, buz, led, vib, a = make(record=False)
    a.raise_(alarm.LOW, alarm.SENSOR_FAULT)
    a.raise_(alarm.HIGH, alarm.FALL)
    a.tick(0)
    micropython.heap_lock()
    try:
        t = 0
        for k in range(3000):
            t += 7
            if k == 1000:
                a.ack()
            if k == 1500:
                a.cue(alarm.CUE_OVER)
            if k == 2000:
                a.clear(alarm.FALL)
            a.tick(t)
    finally:
        micropython.heap_unlock()
    assert buz.writes > 10 and led.writes > 10


def test_long_stall_restarts_pattern():
    clk, buz, led, vib, a = make()
    a.raise_(alarm.HIGH, alarm.FALL)
    a.tick(0)
    clk.now = 3_600_000
    a.tick(clk.now)                            # one hour later: no catch-up loop
    assert buz.sounding() == 1000


def test_bad_requests_raise():
    clk, buz, led, vib, a = make()
    for lv, p in ((3, alarm.FALL), (alarm.HIGH, 9)):
        try:
            a.raise_(lv, p)
        except ValueError:
            continue
        raise AssertionError((lv, p))
