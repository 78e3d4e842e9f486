//! Precedence, in one place: the layers a target's setting is taken from, most specific
//! first. For one OS: the target's `os.<OS>`, its `os.unix` (on Linux and macOS), the target
//! itself, then the same three under `defaults`. `resolve.rs` takes each value from the first
//! layer that sets it; `origins.rs` (`check --explain`) names that layer, from the same list.

use super::model::Os;
use super::raw::{OsOverrides, RawDefaults, RawTarget, Settings};

/// Where in the file a layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Target,
    Defaults,
}

/// Which part of that place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    ThisOs,
    Unix,
    Itself,
}

/// One layer of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer {
    place: Place,
    part: Part,
}

/// The layers for `os`, most specific first.
pub fn for_os(os: Os) -> Vec<Layer> {
    let parts: &[Part] = if os.is_unix() {
        &[Part::ThisOs, Part::Unix, Part::Itself]
    } else {
        &[Part::ThisOs, Part::Itself]
    };
    [Place::Target, Place::Defaults]
        .into_iter()
        .flat_map(|place| parts.iter().map(move |&part| Layer { place, part }))
        .collect()
}

impl Layer {
    /// Its JSON pointer for target `i` (`/targets/0/os/linux`, `/defaults`).
    pub fn pointer(self, i: usize, os: Os) -> String {
        let base = match self.place {
            Place::Target => format!("/targets/{i}"),
            Place::Defaults => "/defaults".to_string(),
        };
        match self.part {
            Part::ThisOs => format!("{base}/os/{}", os.key()),
            Part::Unix => format!("{base}/os/unix"),
            Part::Itself => base,
        }
    }

    /// Its settings for `target` (under `defaults`), when the file has that layer.
    pub fn settings<'a>(
        self,
        target: &'a RawTarget,
        defaults: Option<&'a RawDefaults>,
        os: Os,
    ) -> Option<&'a Settings> {
        let (settings, overrides): (&Settings, Option<&OsOverrides>) = match self.place {
            Place::Target => (&target.settings, target.os.as_deref()),
            Place::Defaults => {
                let d = defaults?;
                (&d.settings, d.os.as_deref())
            }
        };
        match self.part {
            Part::Itself => Some(settings),
            Part::Unix => overrides?.unix.as_ref(),
            Part::ThisOs => {
                let o = overrides?;
                match os {
                    Os::Linux => o.linux.as_ref(),
                    Os::Macos => o.macos.as_ref(),
                    Os::Windows => o.windows.as_ref(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_s_own_os_comes_first_and_the_defaults_last() {
        let pointers =
            |os| -> Vec<String> { for_os(os).into_iter().map(|l| l.pointer(2, os)).collect() };
        assert_eq!(
            pointers(Os::Linux),
            [
                "/targets/2/os/linux",
                "/targets/2/os/unix",
                "/targets/2",
                "/defaults/os/linux",
                "/defaults/os/unix",
                "/defaults"
            ]
        );
        assert_eq!(
            pointers(Os::Windows),
            [
                "/targets/2/os/windows",
                "/targets/2",
                "/defaults/os/windows",
                "/defaults"
            ]
        );
    }
}
