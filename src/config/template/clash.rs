//! Whether a name template gives every fire of a schedule its own name, and if not,
//! two fires that would share one and the fields to add.
//!
//! A name shows some wall-clock fields of the fire in the policy's zone; two fires
//! clash when they agree on every field the template holds. Rendering every fire is
//! too slow (a schedule firing every second fires 31 million times a year), so the
//! check reads the schedule's shape instead: a cron schedule fires on a set of days, at
//! the same times of day on each (every matching hour × minute × second). Two fires
//! then clash exactly when
//! - their times of day differ only in fields the template lacks: an hour, minute or
//!   second field it lacks takes more than one value in the schedule; or
//! - their days differ only in fields the template lacks: found by walking the
//!   schedule's days through one 400-year cycle of the calendar, which stops as soon as
//!   the answer is known (a year without such a pair holds at most 31 of its days); or
//! - one of them was moved by a clock change: a wall time skipped by spring-forward
//!   fires at the end of the gap and shows that time, which another fire may also
//!   show. Every gap of the zone in the next 400 years is looked at.
//!
//! A repeated wall time (fall-back) fires once, so it adds no clash.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone};
use chrono::{Timelike, Utc};
use chrono_tz::Tz;

use super::{Field, Fields, NameTemplate};
use crate::schedule::Schedule;

/// The calendar repeats every 400 years (146097 days, a whole number of weeks), and
/// so does every cron schedule's set of days.
const CYCLE_YEARS: i32 = 400;

/// Why a template does not give every fire its own name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clash {
    /// Without `%Y` every name comes back in a later year.
    NoYear,
    /// Two fires agree on every field the template holds.
    Coarse(Coarse),
}

/// Two fires that would get the same name, and the fields that tell every two apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coarse {
    /// The fewest fields to add so that no two fires share a name (coarsest first
    /// where there is a choice).
    pub add: Fields,
    /// Two fires, each shown at the wall time its name renders.
    pub first: DateTime<Tz>,
    pub second: DateTime<Tz>,
    /// When `first` is a fire moved by spring-forward: the skipped wall time it is for.
    pub moved_from: Option<NaiveDateTime>,
}

impl NameTemplate {
    /// Whether every two fires of `schedule` in `tz` get different names: over the whole
    /// calendar, and across the zone's clock changes after `from`.
    pub fn tells_apart(
        &self,
        schedule: &Schedule,
        tz: Tz,
        from: DateTime<Utc>,
    ) -> Result<(), Clash> {
        let have = self.fields();
        if !have.has(Field::Year) {
            return Err(Clash::NoYear);
        }
        // Examples are taken from tomorrow on, so both fires lie ahead.
        let Some(start) = from.with_timezone(&tz).date_naive().succ_opt() else {
            return Ok(());
        };
        let Some(first_day) = start.pred_opt().and_then(|d| next_day(schedule, d)) else {
            return Ok(());
        };
        let Some(times) = Times::of(schedule, first_day) else {
            return Ok(());
        };

        let mut add = Fields::default();
        let mut example = None;
        for f in [Field::Hour, Field::Minute, Field::Second] {
            let values = times.values(f);
            if !have.has(f) && values.len() > 1 {
                add = add.with(f);
                let a = first_day.and_time(times.first());
                example.get_or_insert((a, times.with(a, f, values[1])));
            }
        }
        let (days, pair) = days_to_add(have, schedule, start);
        if let Some((a, b)) = pair {
            let at = times.first();
            example = Some((a.and_time(at), b.and_time(at)));
        }
        add = add.and(days);
        let mut example = example.map(|(a, b)| (a, b, None));

        // Spring-forward on top: only once the calendar alone is told apart, which the
        // search for a moved fire's twin relies on.
        let to = from + Duration::days(i64::from(CYCLE_YEARS) * 366);
        let moved = moved_fires(schedule, tz, from, to);
        let clash_of = |fields: Fields| {
            moved
                .iter()
                .find_map(|m| twin(fields, m, &moved, schedule, tz, &times).map(|w| (m, w)))
        };
        if let Some((m, twin)) = clash_of(have.and(add)) {
            example.get_or_insert((m.shown, twin, Some(m.skipped)));
            let lacking: Vec<Field> = [
                Field::Month,
                Field::Day,
                Field::Hour,
                Field::Minute,
                Field::Second,
            ]
            .into_iter()
            .filter(|&f| !have.and(add).has(f))
            .collect();
            let extra = fewest(&lacking, |extra| {
                clash_of(have.and(add).and(extra)).is_none()
            });
            add = add.and(extra);
        }

        match example {
            None => Ok(()),
            Some((a, b, moved_from)) => {
                let (first, second) = shown(tz, a, b);
                Err(Clash::Coarse(Coarse {
                    add,
                    first,
                    second,
                    moved_from,
                }))
            }
        }
    }
}

/// The smallest set of `fields` (coarsest first among sets of one size) for which `enough`
/// holds; all of them when none is smaller.
fn fewest(fields: &[Field], enough: impl Fn(Fields) -> bool) -> Fields {
    let all = (1u32 << fields.len()) - 1;
    let set = |mask: u32| {
        fields
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .fold(Fields::default(), |s, (_, &f)| s.with(f))
    };
    let mut masks: Vec<u32> = (1..=all).collect();
    // Fewer fields first; then the set whose finest field is coarsest (`fields` run
    // from coarse to fine, so the smaller mask).
    masks.sort_by_key(|m| (m.count_ones(), *m));
    masks
        .into_iter()
        .map(set)
        .find(|&s| enough(s))
        .unwrap_or_else(|| set(all))
}

/// The instants two wall times fire at and show, in the zone. Should one of them lie in
/// a gap (only possible for an example found on the calendar alone), both are taken 400
/// years later, where the calendar repeats and no zone changes its clock any more.
fn shown(tz: Tz, a: NaiveDateTime, b: NaiveDateTime) -> (DateTime<Tz>, DateTime<Tz>) {
    let at = |w: NaiveDateTime| tz.from_local_datetime(&w).earliest();
    let later = |w: NaiveDateTime| {
        let d = w.date().with_year(w.year() + CYCLE_YEARS)?;
        at(d.and_time(w.time()))
    };
    match (at(a), at(b)) {
        (Some(x), Some(y)) => (x, y),
        _ => match (later(a), later(b)) {
            (Some(x), Some(y)) => (x, y),
            _ => (tz.from_utc_datetime(&a), tz.from_utc_datetime(&b)),
        },
    }
}

/// The first wall time after `after` the schedule matches, on a clock without changes.
fn next_wall(schedule: &Schedule, after: NaiveDateTime) -> Option<NaiveDateTime> {
    schedule
        .next_fire(Tz::UTC, Utc.from_utc_datetime(&after))
        .map(|t| t.naive_utc())
}

/// The first day after `after` on which the schedule fires.
fn next_day(schedule: &Schedule, after: NaiveDate) -> Option<NaiveDate> {
    next_wall(schedule, after.and_hms_opt(23, 59, 59)?).map(|w| w.date())
}

/// The schedule's days in `from..to`.
fn days(schedule: &Schedule, from: NaiveDate, to: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    let mut after = from.pred_opt();
    std::iter::from_fn(move || {
        let day = next_day(schedule, after?).filter(|d| *d < to)?;
        after = Some(day);
        Some(day)
    })
}

/// The times of day a schedule fires at, the same on each of its days.
struct Times {
    hours: Vec<u32>,
    minutes: Vec<u32>,
    seconds: Vec<u32>,
}

impl Times {
    /// Read from the fires of `day`, one of the schedule's days: its hours, the minutes
    /// of its first hour, the seconds of that hour's first minute.
    fn of(schedule: &Schedule, day: NaiveDate) -> Option<Times> {
        let midnight = day.and_hms_opt(0, 0, 0)?;
        let hours = values(schedule, midnight, Field::Hour);
        let hour = midnight.with_hour(*hours.first()?)?;
        let minutes = values(schedule, hour, Field::Minute);
        let minute = hour.with_minute(*minutes.first()?)?;
        let seconds = values(schedule, minute, Field::Second);
        (!seconds.is_empty()).then_some(Times {
            hours,
            minutes,
            seconds,
        })
    }

    fn values(&self, f: Field) -> &[u32] {
        match f {
            Field::Hour => &self.hours,
            Field::Minute => &self.minutes,
            _ => &self.seconds,
        }
    }

    /// The first time of day the schedule fires at.
    fn first(&self) -> NaiveTime {
        NaiveTime::from_hms_opt(self.hours[0], self.minutes[0], self.seconds[0])
            .unwrap_or(NaiveTime::MIN)
    }

    /// `wall` with one clock field set to `value`.
    fn with(&self, wall: NaiveDateTime, f: Field, value: u32) -> NaiveDateTime {
        match f {
            Field::Hour => wall.with_hour(value),
            Field::Minute => wall.with_minute(value),
            _ => wall.with_second(value),
        }
        .unwrap_or(wall)
    }
}

/// The values clock field `f` takes in the schedule's wall times from `start`, the
/// beginning of a day, an hour or a minute, to the end of it: one step per value.
fn values(schedule: &Schedule, start: NaiveDateTime, f: Field) -> Vec<u32> {
    let step = match f {
        Field::Hour => 3600,
        Field::Minute => 60,
        _ => 1,
    };
    let mut out = Vec::new();
    let mut after = start - Duration::seconds(1);
    while let Some(w) = next_wall(schedule, after) {
        let into = (w - start).num_seconds();
        if into >= step * if f == Field::Hour { 24 } else { 60 } {
            break;
        }
        out.push(f.of(w));
        after = start + Duration::seconds((into / step + 1) * step - 1);
    }
    out
}

/// Pairs of the schedule's days within one year.
#[derive(Default)]
struct DayPairs {
    same_month: Option<(NaiveDate, NaiveDate)>,
    same_day_of_month: Option<(NaiveDate, NaiveDate)>,
    same_year: Option<(NaiveDate, NaiveDate)>,
}

/// The date fields to add so that no two of the schedule's days share a name, and two
/// days that do now. `have` holds `%Y`.
fn days_to_add(
    have: Fields,
    schedule: &Schedule,
    start: NaiveDate,
) -> (Fields, Option<(NaiveDate, NaiveDate)>) {
    let none = Fields::default();
    if have.has_date() {
        return (none, None);
    }
    let (month, day) = (have.has(Field::Month), have.has(Field::Day));
    let pairs = day_pairs(schedule, start, |p| match (month, day) {
        (true, _) => p.same_month.is_some(),
        (_, true) => p.same_day_of_month.is_some(),
        _ => p.same_month.is_some() && p.same_day_of_month.is_some(),
    });
    let only = |f: Field| none.with(f);
    let (add, pair) = match (month, day) {
        (true, _) => (only(Field::Day), pairs.same_month),
        (_, true) => (only(Field::Month), pairs.same_day_of_month),
        _ => {
            let add = match (pairs.same_month, pairs.same_day_of_month) {
                (None, _) => only(Field::Month),
                (_, None) => only(Field::Day),
                _ => only(Field::Month).with(Field::Day),
            };
            (add, pairs.same_year)
        }
    };
    match pair {
        Some(pair) => (add, Some(pair)),
        None => (none, None),
    }
}

/// The first pairs of the schedule's days in one year (sharing the month, the day of the
/// month, or only the year) over one calendar cycle from `start`, until `known`.
fn day_pairs(schedule: &Schedule, start: NaiveDate, known: impl Fn(&DayPairs) -> bool) -> DayPairs {
    let mut pairs = DayPairs::default();
    let Some(end) = NaiveDate::from_ymd_opt(start.year() + CYCLE_YEARS + 1, 1, 1) else {
        return pairs;
    };
    let mut year = None;
    let mut first = None;
    let mut by_month = [None; 13];
    let mut by_day = [None; 32];
    for d in days(schedule, start, end) {
        if year != Some(d.year()) {
            year = Some(d.year());
            first = None;
            by_month = [None; 13];
            by_day = [None; 32];
        }
        let seen = |slot: &mut Option<NaiveDate>, pair: &mut Option<(NaiveDate, NaiveDate)>| {
            if let Some(earlier) = *slot {
                pair.get_or_insert((earlier, d));
            } else {
                *slot = Some(d);
            }
        };
        seen(&mut first, &mut pairs.same_year);
        seen(&mut by_month[d.month() as usize], &mut pairs.same_month);
        seen(&mut by_day[d.day() as usize], &mut pairs.same_day_of_month);
        if known(&pairs) {
            break;
        }
    }
    pairs
}

/// A fire moved by spring-forward: skipped wall times fire at the instant the gap ends,
/// and the name shows that instant's wall time.
struct Moved {
    /// The first skipped wall time the schedule matches.
    skipped: NaiveDateTime,
    /// Where the gap starts on the wall clock.
    gap_start: NaiveDateTime,
    /// The wall time the fire shows: the end of the gap.
    shown: NaiveDateTime,
}

/// The fires moved by the zone's spring-forward gaps in `from..to` that show a wall
/// time the schedule does not match itself.
fn moved_fires(schedule: &Schedule, tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Moved> {
    // On whole seconds, where zones change their clocks.
    let offset = |ts: i64| {
        DateTime::from_timestamp(ts, 0).map(|t| {
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc()
        })
    };
    let wall = |ts: i64, offset: i32| {
        DateTime::from_timestamp(ts + i64::from(offset), 0).map(|t| t.naive_utc())
    };
    let day = 86_400;
    let mut out = Vec::new();
    let mut at = from.timestamp();
    let mut before = offset(at);
    while at < to.timestamp() {
        let next = at + day;
        let after = offset(next);
        if after != before {
            // The first second of the new offset (zones change it at most once a day).
            let (mut lo, mut hi) = (at, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset(mid) == before {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            if let (Some(old), Some(new)) = (before, offset(hi))
                && new > old
                && let (Some(gap_start), Some(shown)) = (wall(hi, old), wall(hi, new))
            {
                let matched = |w: NaiveDateTime| next_wall(schedule, w - Duration::seconds(1));
                if let Some(skipped) = matched(gap_start).filter(|w| *w < shown)
                    && matched(shown) != Some(shown)
                {
                    out.push(Moved {
                        skipped,
                        gap_start,
                        shown,
                    });
                }
            }
        }
        before = after;
        at = next;
    }
    out
}

/// Another fire that shows the same name as the moved fire `m` under `fields`, by its
/// wall time. `fields` must tell the schedule's days and times of day apart, so at most
/// one day and one time of day can match `m`'s name: the fields the name holds are
/// `m`'s, the others take the schedule's only value.
fn twin(
    fields: Fields,
    m: &Moved,
    moved: &[Moved],
    schedule: &Schedule,
    tz: Tz,
    times: &Times,
) -> Option<NaiveDateTime> {
    if let Some(other) = moved
        .iter()
        .find(|o| o.shown != m.shown && fields.same(o.shown, m.shown))
    {
        return Some(other.shown);
    }
    let mut hms = [0; 3];
    for (slot, f) in hms
        .iter_mut()
        .zip([Field::Hour, Field::Minute, Field::Second])
    {
        let values = times.values(f);
        *slot = if fields.has(f) {
            Some(f.of(m.shown)).filter(|v| values.contains(v))?
        } else {
            values[0]
        };
    }
    let time = NaiveTime::from_hms_opt(hms[0], hms[1], hms[2])?;
    let day = m.shown.date();
    let year = day.year();
    let month_start = day.with_day(1)?;
    let ranges: Vec<(NaiveDate, NaiveDate)> = if fields.has_date() {
        vec![(day, day.succ_opt()?)]
    } else if fields.has(Field::Month) {
        vec![(
            month_start,
            month_start.checked_add_months(chrono::Months::new(1))?,
        )]
    } else if fields.has(Field::Day) {
        (1..=12)
            .filter_map(|month| NaiveDate::from_ymd_opt(year, month, day.day()))
            .filter_map(|d| Some((d, d.succ_opt()?)))
            .collect()
    } else {
        vec![(
            NaiveDate::from_ymd_opt(year, 1, 1)?,
            NaiveDate::from_ymd_opt(year + 1, 1, 1)?,
        )]
    };
    ranges
        .into_iter()
        .flat_map(|(lo, hi)| days(schedule, lo, hi))
        .map(|d| d.and_time(time))
        .find(|&w| {
            w != m.shown
                && !(m.gap_start <= w && w < m.shown)
                && tz.from_local_datetime(&w).earliest().is_some()
        })
}
