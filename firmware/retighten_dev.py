# Retightening reminder on the device: the connector is retightened every N calendar months
# (config "retighten_interval_months", default 3; the day is clamped to the month's end:
# 30 Nov + 3 months = 28/29 Feb). Checked once a day against the RTC (UTC days); when due it
# sets dev.retighten_due (the alarm wiring raises the low-priority reminder from it) and logs a
# K_RETIGHTEN record; recording a retightening (C_RETIGHTEN) clears it.
import hal
import flashlog

CLOCK_VALID = 1577836800          # 2020-01-01: an RTC before this was never set
_CHECK_MS = 60000                 # look at the clock once a minute; act once a day


def days_from_civil(y, m, d):
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


def month_days(y, m):
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def add_months(y, m, d, n):
    k = m - 1 + n
    y += k // 12
    m = k % 12 + 1
    return y, m, min(d, month_days(y, m))


def parse_date(s):
    """(y, m, d) of 'YYYY-MM-DD' (2000..2099), or None."""
    if not isinstance(s, str) or len(s) != 10 or s[4] != "-" or s[7] != "-":
        return None
    try:
        y, m, d = int(s[0:4]), int(s[5:7]), int(s[8:10])
    except ValueError:
        return None
    if not (2000 <= y <= 2099 and 1 <= m <= 12 and 1 <= d <= month_days(y, m)):
        return None
    if not (s[0:4] + s[5:7] + s[8:10]).isdigit():
        return None
    return y, m, d


def date_str(ymd):
    return "%04d-%02d-%02d" % ymd


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
