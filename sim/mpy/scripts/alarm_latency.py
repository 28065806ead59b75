# Alarm latency (sim/oimon_sim/alarm_latency.py): the firmware's main loop (app.Device) plays the
# simulated sensor at full speed (OIMON_SIM_SENSOR, OIMON_SIM_SPEED=0); prints one JSON line with
# the sample of the first over-limit filtered value and of the first buzzer PWM.
import json
import app, hal
dev = app.Device()
first_buzz = -1
first_over = -1
comp = dev.det.limits()[0]
while dev.sample():
    if first_over < 0 and dev.out[0] > comp:
        first_over = dev.count - 1
    dev._service_outputs(hal.ticks_ms())
    if first_buzz < 0 and dev.alarm.buz.duty_u16() > 0:
        first_buzz = dev.count - 1
    if first_buzz >= 0 and dev.count > first_buzz + 100:
        break
print(json.dumps({"first_buzz": first_buzz, "first_over": first_over, "debounce": dev.det.limits()[3],
                  "comp": dev.det.limits()[0], "rate": dev.rate}))
