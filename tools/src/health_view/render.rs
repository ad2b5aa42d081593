//! Rendering: the fleet as a table, one row per instance.

use chrono::{DateTime, Utc};

use super::fleet::{age, lag, p99_ms, rates, status, Fleet, Instance};
use super::{GAP, MAX_INSTANCE_CHARS};

#[derive(Clone, Copy)]
pub(super) enum Align {
    Left,
    Right,
}

pub(super) const COLUMNS: [(&str, Align); 11] = [
    ("INSTANCE", Align::Left),
    ("STATUS", Align::Left),
    ("UPTIME", Align::Right),
    ("BREAKER", Align::Left),
    ("TOKEN TTL", Align::Right),
    ("OPS/S", Align::Right),
    ("ERR/S", Align::Right),
    ("P99", Align::Right),
    ("IN-FLIGHT", Align::Right),
    ("LAG", Align::Right),
    ("AGE", Align::Right),
];

/// The table at `now`: a header, one row per instance (by instance id), and a
/// footer when there is nothing to show or records were skipped.
pub fn render(fleet: &Fleet, now: DateTime<Utc>) -> String {
    let rows: Vec<[String; COLUMNS.len()]> =
        fleet.instances.iter().map(|(id, instance)| row(fleet, id, instance, now)).collect();
    let mut out = table(&rows);
    if fleet.is_empty() {
        out.push_str("(no health events)\n");
    }
    if fleet.skipped > 0 {
        let s = if fleet.skipped == 1 { "" } else { "s" };
        out.push_str(&format!("({} record{s} skipped: not a health event)\n", fleet.skipped));
    }
    out
}

pub(super) fn row(fleet: &Fleet, id: &str, instance: &Instance, now: DateTime<Utc>) -> [String; COLUMNS.len()] {
    let event = &instance.last.payload;
    let rates = rates(instance);
    [
        display_id(id),
        status(fleet, instance, now).to_owned(),
        duration(event.uptime_seconds),
        event.circuit_breaker.state.as_str().to_owned(),
        event.token.ttl_seconds.map_or_else(dash, |ttl| duration(ttl as f64)),
        rates.map_or_else(dash, |(ops, _)| rate(ops)),
        rates.map_or_else(dash, |(_, errors)| rate(errors)),
        p99_ms(instance).map_or_else(dash, |p| format!("{p:.1}ms")),
        event.bus.in_flight.to_string(),
        lag(instance).map_or_else(dash, |n| n.to_string()),
        duration(age(instance, now).num_milliseconds() as f64 / 1000.0),
    ]
}

/// Header and rows, each column as wide as its widest cell.
pub(super) fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let headers: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .zip(COLUMNS.iter().map(|(_, align)| *align))
            .map(|((cell, &width), align)| match align {
                Align::Left => format!("{cell:<width$}"),
                Align::Right => format!("{cell:>width$}"),
            })
            .collect();
        let mut text = padded.join(GAP).trim_end().to_owned();
        text.push('\n');
        text
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

pub(super) fn dash() -> String {
    "-".to_owned()
}

/// An instance id fit for a terminal: control characters (escape sequences)
/// replaced, long ids cut.
pub(super) fn display_id(id: &str) -> String {
    let clean: String = id.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    if clean.chars().count() > MAX_INSTANCE_CHARS {
        let mut cut: String = clean.chars().take(MAX_INSTANCE_CHARS - 1).collect();
        cut.push('…');
        cut
    } else {
        clean
    }
}

/// `42s`, `5m3s`, `2h10m`, `3d4h`.
pub(super) fn duration(seconds: f64) -> String {
    // `as` saturates: NaN and negatives become 0, huge values u64::MAX.
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m{}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h{}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// A per-second rate with about three significant digits.
pub(super) fn rate(per_second: f64) -> String {
    if per_second >= 100.0 {
        format!("{per_second:.0}")
    } else if per_second >= 10.0 {
        format!("{per_second:.1}")
    } else {
        format!("{per_second:.2}")
    }
}
