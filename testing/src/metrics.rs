//! Reading a `/metrics` answer in tests: the OpenMetrics text parsed into its families and
//! samples, so a test asserts on values instead of on substrings.

use std::collections::BTreeMap;

/// One scrape: every sample by name and labels, and every family's declared type.
#[derive(Debug, Default)]
pub struct Scrape {
    /// `(sample name, sorted labels)` → value.
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
    /// Family name → `counter`, `gauge`, `histogram`, …
    pub families: BTreeMap<String, String>,
}

impl Scrape {
    /// Parses OpenMetrics (or Prometheus) text; panics on a line it cannot read, which is
    /// the test's failure report.
    pub fn parse(text: &str) -> Self {
        let mut scrape = Self::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                scrape.families.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample line: series value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("a numeric sample value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            scrape.samples.insert((name.to_owned(), labels), value);
        }
        scrape
    }

    /// The sample `name` with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples.get(&(name.to_owned(), labels)).copied()
    }

    /// The sum of every sample `name` whose labels include these.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((sample, have), _)| {
                sample == name
                    && labels
                        .iter()
                        .all(|(k, v)| have.get(*k).is_some_and(|have| have == v))
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// Every label value of `label` on samples of `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        self.samples
            .keys()
            .filter(|(sample, _)| sample == name)
            .filter_map(|(_, labels)| labels.get(label).cloned())
            .collect()
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(match escaped {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_families_labels_and_values() {
        let scrape = Scrape::parse(
            "# HELP quire_http_requests HTTP requests.\n\
             # TYPE quire_http_requests counter\n\
             quire_http_requests_total{method=\"GET\",route=\"/reports/{id}\",status=\"200\"} 3\n\
             quire_http_requests_total{method=\"POST\",route=\"/a,b\",status=\"202\"} 1\n\
             # TYPE quire_worker_in_flight gauge\n\
             quire_worker_in_flight 0\n\
             # EOF\n",
        );
        assert_eq!(scrape.families["quire_http_requests"], "counter");
        assert_eq!(
            scrape.value(
                "quire_http_requests_total",
                &[
                    ("method", "GET"),
                    ("route", "/reports/{id}"),
                    ("status", "200")
                ]
            ),
            Some(3.0)
        );
        assert_eq!(scrape.sum("quire_http_requests_total", &[]), 4.0);
        assert_eq!(scrape.value("quire_worker_in_flight", &[]), Some(0.0));
        assert_eq!(
            scrape.label_values("quire_http_requests_total", "route"),
            vec!["/reports/{id}", "/a,b"]
        );
    }
}
