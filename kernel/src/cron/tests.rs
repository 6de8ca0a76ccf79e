use super::*;

/// Unix seconds of a civil time in `tz`.
fn at(civil: &str, tz: &str) -> i64 {
    let dt: jiff::civil::DateTime = civil.parse().unwrap();
    dt.to_zoned(TimeZone::get(tz).unwrap())
        .unwrap()
        .timestamp()
        .as_second()
}

#[test]
fn five_and_six_fields_and_descriptors_tick_in_their_time_zone() {
    let s = Schedule::parse("30 2 * * *", "Europe/Paris").unwrap();
    let from = at("2026-01-10T00:00:00", "UTC");
    assert_eq!(
        s.next_after(from),
        Some(at("2026-01-10T02:30:00", "Europe/Paris"))
    );
    assert_eq!(s.next_after(from), Some(at("2026-01-10T01:30:00", "UTC")));
    let six = Schedule::parse("15 * * * * *", "UTC").unwrap();
    assert_eq!(six.next_after(from), Some(from + 15));
    let daily = Schedule::parse("@daily", "America/New_York").unwrap();
    assert_eq!(
        daily.next_after(from),
        Some(at("2026-01-10T00:00:00", "America/New_York"))
    );
    assert_eq!(
        Schedule::parse("@hourly", "").unwrap().next_after(from),
        Some(from + 3600)
    );
}

#[test]
fn a_daylight_saving_gap_or_overlap_ticks_once() {
    // 2026-03-29 02:30 does not exist in Paris (clocks go 02:00 -> 03:00).
    let s = Schedule::parse("30 2 * * *", "Europe/Paris").unwrap();
    let day = at("2026-03-29T00:00:00", "Europe/Paris");
    let (ticks, n) = s.ticks_between(day, day + 2 * 86_400, 10);
    assert_eq!(n, 2, "{ticks:?}");
    // 2026-10-25 02:30 happens twice in Paris: one tick.
    let day = at("2026-10-25T00:00:00", "Europe/Paris");
    let (_, n) = s.ticks_between(day, day + 86_400 - 1, 10);
    assert_eq!(n, 1);
}

#[test]
fn every_counts_from_the_epoch_and_reads_compound_durations() {
    let s = Schedule::parse("@every 1h30m", "Europe/Paris").unwrap();
    assert_eq!(s.next_after(0), Some(5400));
    assert_eq!(s.next_after(5400), Some(10_800));
    assert_eq!(s.next_after(5399), Some(5400));
    let s = Schedule::parse("@every 2s", "UTC").unwrap();
    let (ticks, n) = s.ticks_between(100, 111, 3);
    assert_eq!((ticks, n), (vec![106, 108, 110], 5));
}

#[test]
fn bad_schedules_and_zones_are_refused_with_the_reason() {
    let cases = [
        ("* * * *", "4 fields"),
        ("* * * * * * 2026", "7 fields"),
        ("61 * * * *", "schedule `61 * * * *`"),
        ("@fortnightly", "unknown descriptor"),
        ("@every", "needs a duration"),
        ("@every 0s", "at least one second"),
        ("@every 10", "has no unit"),
        ("@every 5x", "no unit"),
        ("", "0 fields"),
    ];
    for (cron, want) in cases {
        let e = Schedule::parse(cron, "UTC").unwrap_err().to_string();
        assert!(e.contains(want), "{cron:?}: {e}");
    }
    let e = Schedule::parse("@daily", "Mars/Olympus").unwrap_err();
    assert_eq!(e, CronError::TimeZone("Mars/Olympus".into()));
    assert!(e.to_string().contains("IANA"));
}

#[test]
fn a_pattern_that_never_matches_has_no_next_tick() {
    let s = Schedule::parse("0 0 30 2 *", "UTC").unwrap();
    assert_eq!(s.next_after(0), None);
    assert_eq!(s.ticks_between(0, 10_000_000, 5).1, 0);
}
