# Retightening reminder on the device: the connector is retightened every N calendar months
# (config "retighten_interval_months", default 3; the day is clamped to the month's end:
# 30 Nov + 3 months = 28/29 Feb). Checked once a day against the RTC (UTC days); when due it
# sets dev.retighten_due (the alarm wiring raises the low-priority reminder from it) and logs a
# K_RETIGHTEN record; recording a retightening (C_RETIGHTEN) clears it.
import hal
import flashlog
from oimon_common.dates import days_from_civil, civil_from_days, month_days, add_months, parse_ymd, ymd_str  # noqa: F401

CLOCK_VALID = 1577836800          # 2020-01-01: an RTC before this was never set
_CHECK_MS = 60000                 # look at the clock once a minute; act once a day


parse_date = parse_ymd
date_str = ymd_str


def due_date(cfg):
    """(y, m, d) when the next retightening is due, or None if none was ever recorded."""
    last = parse_date(cfg.get("retighten_last", ""))
    if last is None:
        return None
    iv = cfg.get("retighten_interval_months", 3)
    if not isinstance(iv, int) or not 1 <= iv <= 24:
        iv = 3
    return add_months(last[0], last[1], last[2], iv)


class Reminder:
    def __init__(self):
        self.day = -1
        self._t = hal.ticks_ms()
        self.due = None

    def check(self, dev, force=False):
        """Cheap when called from idle(): reads the clock once a minute and re-evaluates once
        per UTC day (or at once with force: clock set, retightening recorded, boot)."""
        if not force:
            now = hal.ticks_ms()
            if hal.ticks_diff(now, self._t) < _CHECK_MS and self.day >= 0:
                return dev.retighten_due
            self._t = now
        t = hal.unix_time()
        if t < CLOCK_VALID:
            return dev.retighten_due          # no date to compare with yet
        day = t // 86400
        if day == self.day and not force:
            return dev.retighten_due
        self.day = day
        due = due_date(dev.cfg)
        self.due = due
        is_due = due is not None and day >= days_from_civil(due[0], due[1], due[2])
        if is_due and not dev.retighten_due:
            dev.log.append(flashlog.K_RETIGHTEN, ('{"reminder":"due","due":"%s","last":"%s"}' % (
                date_str(due), dev.cfg.get("retighten_last", ""))).encode())
        dev.retighten_due = is_due
        return is_due

    def recorded(self, dev):
        """A retightening was just recorded: clear the reminder and re-evaluate."""
        dev.retighten_due = False
        self.check(dev, True)
