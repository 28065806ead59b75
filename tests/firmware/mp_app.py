# The main loop's alarm wiring on MicroPython (app.Device with the sim HAL): an acknowledged
# alarm goes quiet, the button acknowledges, a fall alarm ends on acknowledge.
import hal
import alarm
import detect


def _device():
    import app
    return app.Device()


def test_ack_silences_overload_and_fall_alarms():
    d = _device()
    now = hal.ticks_ms()
    d._alarm_for(detect.EV_FALL)
    assert d.alarm.active() == alarm.FALL
    assert d.alarm.buz.duty_u16() > 0                 # sounding on the event's own sample
    assert d.ack_alarm() is True
    d._service_outputs(now)
    assert d.alarm.buz.duty_u16() == 0
    assert d.alarm.active() < 0                       # the fall alarm ended
    assert d.ack_alarm() is False                     # nothing left to acknowledge


def test_button_short_press_acknowledges():
    d = _device()
    d._alarm_for(detect.EV_OVERLOAD_START)
    t = hal.ticks_ms()
    d.button.value(0)                                 # pressed
    d._btn_next = t
    d._service_outputs(t)
    d.button.value(1)                                 # released 100 ms later
    t2 = hal.ticks_add(t, 100)
    d._btn_next = t2
    d._service_outputs(t2)
    assert d.alarm.buz.duty_u16() == 0


def test_overload_alarm_lasts_one_burst_after_a_short_overload():
    d = _device()
    t = hal.ticks_ms()
    d._alarm_for(detect.EV_OVERLOAD_START)
    d._alarm_for(detect.EV_OVERLOAD_END)              # 50 ms later in a real overload
    d._service_outputs(hal.ticks_add(t, 100))
    assert d.alarm.active() == alarm.OVERLOAD         # still shown
    d._service_outputs(hal.ticks_add(t, 2600))
    assert d.alarm.active() < 0


def test_tare_sets_the_offsets_and_stores_them():
    import app
    from oimon_common import calib
    import dsp
    c = calib.Calibration.from_gains([[0.18, 0, 0], [0, 0.0099, 0], [0, 0, 0.0099]],
                                     [1000, -500, 300, 0])
    calib.save(app.CALIB_PATH, c)
    d = app.Device()
    assert d.cal.offsets[:3] == [1000, -500, 300]
    assert d.tare() == {"tare": "started", "samples": dsp.TARE_N_DEFAULT}
    while d.pipe.tare_state == dsp.TARE_RUNNING:     # the sim HAL's quiet bridge: 0 counts
        d.sample()
        d._tare_finish()
    assert d.pipe.tare_state == dsp.TARE_OK
    assert calib.load(app.CALIB_PATH).offsets[:3] == [0, 0, 0]   # kept across a restart


def test_tare_refused_while_uncalibrated():
    d = _device()
    assert "uncalibrated" in d.tare()["error"]


def test_imu_batches_reach_the_inertial_path_and_the_alarm():
    # the LSM6DSO32 driver over the fake part: FIFO batches read in idle() (imu_poll) go through
    # detect.Detector.imu_step; a fall onto the hip raises the fall alarm; a silent part is a
    # reported IMU fault and the load-only fallback (docs/algorithm.md 5.7)
    from fake_lsm6dso import FakeLSM6DSO
    import lsm6dso
    d = _device()
    part = FakeLSM6DSO()
    d.imu = lsm6dso.LSM6DSO(lsm6dso.LSM6DSOIO(part), hal.ticks_ms)
    assert d.imu.begin()
    d.det.attach_imu(d.imu.RATE)
    st = d.det.st

    def feed(k, acc, gyro=(0, 0, 0)):
        for i in range(k):
            part.sample((acc[0] + 3 * (i & 1), acc[1], acc[2]), gyro)   # noise: 3 LSB
            st[0] = st[0] + 10                    # ~ one IMU period of load samples
            if i % 10 == 9:
                d.imu_poll()
    feed(320, (0, 0, 1024))                           # upright 3 s (LSB: 1024 = 1 g)
    feed(40, (200, 0, 200), (13000, 4000, 0))         # free fall while turning
    feed(4, (4100, 0, 800), (13000, 4000, 0))         # the hip's impact, 4 g
    feed(400, (1024, 0, 0))                           # lying still
    falls = [e for e in d.events if e["kind"] == "fall"]
    assert len(falls) == 1 and falls[0]["path"] == "imu", d.events
    assert d.alarm.active() == alarm.FALL
    assert d.det.status()["falls"] == "load+imu"
    d.ack_alarm()
    d.imu._last = hal.ticks_add(hal.ticks_ms(), -1000)   # nothing for a second
    d.imu_poll()
    assert any(e["kind"] == "imu_fault" for e in d.events)
    assert d.det.status() == {"imu": "fault", "load": "ok", "falls": "load only"}
