# Calendar arithmetic on the device (no datetime in MicroPython), shared by the retightening
# reminder (retighten_dev.py) and the exercise plan (exercise.py); also runs on CPython.
# Day numbers are days since 1970-01-01 in the proleptic Gregorian calendar.


def days_from_civil(y, m, d):
    # H. Hinnant's days_from_civil
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if m <= 2 else 0), m, d


def month_days(y, m):
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def add_months(y, m, d, n):
    """(y, m, d) + n calendar months, the day clamped to the month's end (30 Nov + 3 = 28/29 Feb)."""
    k = m - 1 + n
    y += k // 12
    m = k % 12 + 1
    return y, m, min(d, month_days(y, m))


def parse_ymd(s, first_year=2000):
    """(y, m, d) of a strict 'YYYY-MM-DD' (first_year..2099), or None."""
    if not isinstance(s, str) or len(s) != 10 or s[4] != "-" or s[7] != "-":
        return None
    if not (s[0:4] + s[5:7] + s[8:10]).isdigit():
        return None
    y, m, d = int(s[0:4]), int(s[5:7]), int(s[8:10])
    if not (first_year <= y <= 2099 and 1 <= m <= 12 and 1 <= d <= month_days(y, m)):
        return None
    return y, m, d


def ymd_str(ymd):
    return "%04d-%02d-%02d" % (ymd[0], ymd[1], ymd[2])
