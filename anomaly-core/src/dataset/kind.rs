//! Which labelled dataset a folder holds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The labelled datasets this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// Server Machine Dataset (OmniAnomaly, KDD 2019): 38 metrics per machine.
    Smd,
    /// Application Server Dataset (InterFusion, KDD 2021): 19 metrics per server.
    Asd,
    /// Numenta Anomaly Benchmark: univariate `timestamp,value` series.
    Nab,
}

impl DatasetKind {
    /// Every kind, in a stable order.
    pub const ALL: [DatasetKind; 3] = [DatasetKind::Smd, DatasetKind::Asd, DatasetKind::Nab];

    /// The folder of this dataset under the data root (`SMD`, `ASD`, `NAB`).
    pub fn folder_name(self) -> &'static str {
        match self {
            DatasetKind::Smd => "SMD",
            DatasetKind::Asd => "ASD",
            DatasetKind::Nab => "NAB",
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatasetKind::Smd => "smd",
            DatasetKind::Asd => "asd",
            DatasetKind::Nab => "nab",
        })
    }
}

impl FromStr for DatasetKind {
    type Err = Error;

    /// Parses `smd`, `asd` or `nab`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DatasetKind::ALL
            .into_iter()
            .find(|kind| kind.folder_name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::InvalidInput(format!("unknown dataset {s:?}; expected smd, asd or nab"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_and_round_trips_display() {
        for kind in DatasetKind::ALL {
            assert_eq!(kind.to_string().parse::<DatasetKind>().unwrap(), kind);
            assert_eq!(kind.folder_name().parse::<DatasetKind>().unwrap(), kind);
        }
        assert_eq!("Smd".parse::<DatasetKind>().unwrap(), DatasetKind::Smd);
        assert!(matches!(
            "yahoo".parse::<DatasetKind>(),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn serde_uses_lowercase_names() {
        assert_eq!(serde_json::to_string(&DatasetKind::Asd).unwrap(), "\"asd\"");
        assert_eq!(
            serde_json::from_str::<DatasetKind>("\"nab\"").unwrap(),
            DatasetKind::Nab
        );
    }
}
