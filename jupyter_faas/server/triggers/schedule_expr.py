"""EventBridge schedule expressions: ``rate(N unit)`` and 6-field ``cron(...)``, in UTC.

``parse(text)`` returns a :class:`Rate` or :class:`Cron` with ``next_after(t)`` (seconds since
the epoch -> the next firing strictly after ``t``, or None if there is none), or raises
:class:`~jupyter_faas.errors.InvalidParameter` saying what is wrong.

Cron is EventBridge's: ``cron(Minutes Hours Day-of-month Month Day-of-week Year)``, day of
week 1-7 = SUN-SAT, exactly one of day-of-month and day-of-week is ``?``, ``L``, ``W``
(``15W``, ``LW``), ``#`` (``3#2``), names (JAN-DEC, SUN-SAT).  The arithmetic is cronsim's
(5-field Vixie cron with ``L``, ``LW`` and ``#``): this module checks each field against
EventBridge's rules (so the message names the field), translates day-of-week numbers
(EventBridge 1-7 -> cron 0-6) and ``?``, and adds what cronsim lacks: the Year field and
``nW`` (nearest weekday), as filters over cronsim's candidates.  ``rate`` also takes
``second(s)`` here (not in EventBridge), so a notebook can watch a schedule fire.
"""

from __future__ import annotations

import calendar
import datetime
import math
import re
from dataclasses import dataclass

from cronsim import CronSim, CronSimError

from ...errors import InvalidParameter

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"^rate\(\s*(\S+)\s+(\S+)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
UTC = datetime.timezone.utc
YEAR_MIN, YEAR_MAX = 1970, 2199
#: cronsim candidates looked at for one next firing (W and Year filters skip some)
_SCAN = 5000

_MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
_DAYS = "SUN MON TUE WED THU FRI SAT".split()
# (name, lo, hi, extra characters allowed besides digits , - * /)
_FIELDS = [("Minutes", 0, 59, ""), ("Hours", 0, 23, ""), ("Day-of-month", 1, 31, "?LW"),
           ("Month", 1, 12, ""), ("Day-of-week", 1, 7, "?L#"), ("Year", YEAR_MIN, YEAR_MAX, "")]


@dataclass(frozen=True)
class Rate:
    expression: str
    period: float
    anchor: float   # firings are anchor + k * period

    def next_after(self, t: float) -> float:
        k = math.floor((t - self.anchor) / self.period) + 1
        return self.anchor + max(k, 1) * self.period


@dataclass(frozen=True)
class Cron:
    expression: str
    cron5: str             # what cronsim evaluates
    years: frozenset       # allowed years
    nearest_weekday: int | None   # nW in day-of-month

    def next_after(self, t: float) -> float | None:
        start = datetime.datetime.fromtimestamp(math.floor(t), UTC).replace(tzinfo=None)
        it = CronSim(self.cron5, start)
        for _ in range(_SCAN):
            try:
                cand = next(it)
            except StopIteration:
                return None
            if cand.year > max(self.years):
                return None
            if cand.year not in self.years:
                later = [y for y in self.years if y > cand.year]
                if not later:
                    return None
                it = CronSim(self.cron5, datetime.datetime(min(later), 1, 1) - datetime.timedelta(seconds=1))
                continue
            if self.nearest_weekday is not None and cand.day != _nearest_weekday(
                    cand.year, cand.month, self.nearest_weekday):
                continue
            return cand.replace(tzinfo=UTC).timestamp()
        return None


def parse(text, anchor: float = 0.0):
    """A :class:`Rate` (firing ``anchor`` + k × period) or :class:`Cron`; InvalidParameter if bad."""
    if not isinstance(text, str):
        raise InvalidParameter(f"a schedule is a string like 'rate(5 minutes)' or 'cron(0 12 * * ? *)', "
                               f"not {type(text).__name__}")
    text = text.strip()
    if text.startswith("rate("):
        return _rate(text, anchor)
    if text.startswith("cron("):
        return _cron(text)
    raise InvalidParameter(f"schedule {text!r} is neither rate(N unit) nor cron(m h dom month dow year)")


def _rate(text: str, anchor: float) -> Rate:
    m = _RATE.match(text)
    if not m:
        raise InvalidParameter(f"{text!r}: a rate is rate(N unit), e.g. rate(5 minutes)")
    value, unit = m.groups()
    if not value.isdigit() or int(value) < 1:
        raise InvalidParameter(f"{text!r}: the value {value!r} must be a whole number >= 1")
    n = int(value)
    base = unit[:-1] if unit.endswith("s") else unit
    if base not in _UNITS:
        raise InvalidParameter(f"{text!r}: the unit {unit!r} is not one of second(s), minute(s), "
                               f"hour(s), day(s)")
    if (n == 1) != (unit == base):
        want = base if n == 1 else base + "s"
        raise InvalidParameter(f"{text!r}: EventBridge wants the singular unit iff the value is 1: "
                               f"rate({n} {want})")
    return Rate(text, float(n * _UNITS[base]), anchor)


def _cron(text: str) -> Cron:
    m = _CRON.match(text)
    fields = m.group(1).split() if m else []
    if len(fields) != 6:
        raise InvalidParameter(
            f"{text!r}: EventBridge cron has 6 fields (Minutes Hours Day-of-month Month Day-of-week "
            f"Year), this has {len(fields)}; e.g. cron(0 12 * * ? *)")
    for (name, lo, hi, extra), value in zip(_FIELDS, fields):
        _check_field(text, name, value, lo, hi, extra)
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise InvalidParameter(f"{text!r}: exactly one of Day-of-month ({dom!r}) and Day-of-week "
                               f"({dow!r}) must be '?'")
    if dow.count("#") > 1:
        raise InvalidParameter(f"{text!r}: Day-of-week allows only one '#' expression")
    nearest = None
    w = re.fullmatch(r"(\d+)W", dom)
    if w:
        nearest = int(w.group(1))
        dom = "*"
    elif "W" in dom and dom != "LW":
        raise InvalidParameter(f"{text!r}: Day-of-month 'W' is 'nW' (nearest weekday to day n) or 'LW'")
    cron5 = " ".join([minute, hour, "*" if dom == "?" else dom, month, _dow(dow)])
    try:
        CronSim(cron5, datetime.datetime(2000, 1, 1))
    except CronSimError as exc:
        raise InvalidParameter(f"{text!r} is not a valid cron expression: {exc}") from None
    years = frozenset(_expand(year, YEAR_MIN, YEAR_MAX))
    result = Cron(text, cron5, years, nearest)
    if result.next_after(datetime.datetime(max(YEAR_MIN, min(years)) - 1, 12, 31,
                                           tzinfo=UTC).timestamp()) is None:
        raise InvalidParameter(f"{text!r} never fires (no date matches every field)")
    return result


def _check_field(text, name, value, lo, hi, extra) -> None:
    allowed = set("0123456789,-*/") | set(extra)
    upper = value.upper()
    names = _MONTHS if name == "Month" else _DAYS if name == "Day-of-week" else []
    stripped = upper
    for n in names:
        stripped = stripped.replace(n, "")
    bad = set(stripped) - allowed
    if bad:
        raise InvalidParameter(f"{text!r}: {name} {value!r} has {''.join(sorted(bad))!r}; "
                               f"{name} takes {lo}-{hi}"
                               f"{' or ' + names[0] + '-' + names[-1] if names else ''} with , - * /"
                               f"{' ' + ' '.join(extra) if extra else ''}")
    if value == "?" and "?" not in extra:
        raise InvalidParameter(f"{text!r}: '?' is only for Day-of-month or Day-of-week")
    for number in re.findall(r"\d+", value):
        if "/" in value and value.split("/", 1)[1] == number:
            if int(number) < 1:
                raise InvalidParameter(f"{text!r}: {name} step {value!r} must be >= 1")
            continue
        if "#" in value and value.split("#", 1)[1] == number:
            if not 1 <= int(number) <= 5:
                raise InvalidParameter(f"{text!r}: {name} {value!r}: the n in d#n is 1 to 5")
            continue
        if not lo <= int(number) <= hi:
            raise InvalidParameter(f"{text!r}: {name} {value!r} is out of range {lo}-{hi}")


def _dow(value: str) -> str:
    """EventBridge day of week (1-7 = SUN-SAT, ``?``, ``L`` alone = SAT) -> cron's (0-6)."""
    if value in ("?", "*"):
        return "*"
    if value == "L":
        return "6"

    def shift(m):
        return str(int(m.group(0)) - 1)
    out = []
    for part in value.split(","):
        if "#" in part:
            day, n = part.split("#")
            out.append(re.sub(r"^\d+", shift, day) + "#" + n)
        elif "/" in part:
            head, step = part.split("/")
            out.append(re.sub(r"\d+", shift, head) + "/" + step)
        else:
            out.append(re.sub(r"\d+", shift, part))
    return ",".join(out)


def _expand(value: str, lo: int, hi: int) -> set:
    out = set()
    for part in value.split(","):
        step = 1
        if "/" in part:
            part, s = part.split("/")
            step = int(s)
        if part == "*":
            a, b = lo, hi
        elif "-" in part:
            a, b = (int(x) for x in part.split("-"))
        else:
            a = int(part)
            b = hi if step > 1 else a
        out.update(range(a, b + 1, step))
    return out


def _nearest_weekday(year: int, month: int, day: int) -> int:
    """The weekday nearest ``day`` in the month (cron's ``nW``), never leaving the month."""
    last = calendar.monthrange(year, month)[1]
    day = min(day, last)
    wd = calendar.weekday(year, month, day)  # 0 = Monday
    if wd == 5:   # Saturday -> Friday, or Monday if the 1st
        return day - 1 if day > 1 else day + 2
    if wd == 6:   # Sunday -> Monday, or Friday if the last
        return day + 1 if day < last else day - 2
    return day
