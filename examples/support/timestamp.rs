//! Parses the RFC 3339 UTC timestamps of protector's JSON log (`2026-01-02T03:04:05.678901Z`)
//! into seconds since the Unix epoch. Shared by the benchmark and the integration tests.

pub fn epoch_secs(ts: &str) -> f64 {
    let (date, time) = ts
        .trim_end_matches('Z')
        .split_once('T')
        .expect("RFC 3339 timestamp");
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (y, m, day) = (d[0], d[1], d[2]);
    // Days from civil date (proleptic Gregorian calendar).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let t: Vec<f64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    days as f64 * 86400.0 + t[0] * 3600.0 + t[1] * 60.0 + t[2]
}
