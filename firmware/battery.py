# Battery voltage (VBAT through the switched 1M/1M divider on GPIO1, ADC1) and charger state
# (MCP73831 STAT on GPIO4: low = charging, high = charge complete, released = no input power),
# sampled by the supervisor every PERIOD_MS between samples, never on the sampling path.
# Alarms: below VBAT_LOW_MV (board.py: 3500 mV, ~10 % of a LiPo's capacity left) a technical
# "battery low"; below VBAT_CRIT_MV (3300 mV) "battery critical". 100 mV hysteresis to clear.
import board

PERIOD_MS = 10000
HYST_MV = 100
OK = 0
LOW = 1
CRITICAL = 2


class Battery:
    def __init__(self, read):
        self._read = read          # () -> (mV, charging 0/1): hal.battery_read
        self.mv = 0
        self.charging = 0
        self.state = OK
        self.errors = 0

    def sample(self):
        """Read once; returns the state (OK, LOW, CRITICAL). A failed read keeps the last."""
        try:
            mv, chg = self._read()
        except Exception:  # noqa: BLE001 - an ADC error must not stop the monitor
            self.errors += 1
            return self.state
        self.mv, self.charging = mv, chg
        lo, crit = board.VBAT_LOW_MV, board.VBAT_CRIT_MV
        if mv < crit:
            self.state = CRITICAL
        elif mv < lo:
            self.state = LOW if self.state != CRITICAL or mv >= crit + HYST_MV else CRITICAL
        elif mv >= lo + HYST_MV:
            self.state = OK
        return self.state

    def info(self):
        return {"mv": self.mv, "charging": bool(self.charging),
                "state": ("ok", "low", "critical")[self.state]}
