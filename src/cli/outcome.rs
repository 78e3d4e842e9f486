//! What a command ends with: what it says on stdout and on stderr, and its exit status.
//! Every command returns one; [`Outcome::exit`], called once by `cli::main`, prints it
//! (escaped: `text::clean_lines`) and gives the exit status. The one place the CLI prints
//! and exits (the daemon logs instead).

use std::process::ExitCode;

#[derive(Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Outcome {
    pub status: u8,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Done: exit status 0.
    pub fn ok() -> Outcome {
        Outcome::default()
    }

    /// Exit status `status`.
    pub fn status(status: u8) -> Outcome {
        Outcome {
            status,
            ..Outcome::default()
        }
    }

    /// Exit status 1, saying `message` on stderr (a line).
    pub fn failed(message: impl AsRef<str>) -> Outcome {
        Outcome::status(1).say_err(message)
    }

    /// Adds `text` to stdout.
    pub fn say(mut self, text: impl AsRef<str>) -> Outcome {
        self.stdout.push_str(text.as_ref());
        self
    }

    /// Adds `text` to stderr, ending it with a line break if it has none.
    pub fn say_err(mut self, text: impl AsRef<str>) -> Outcome {
        let text = text.as_ref();
        self.stderr.push_str(text);
        if !text.is_empty() && !text.ends_with('\n') {
            self.stderr.push('\n');
        }
        self
    }

    /// Prints what it says and gives its exit status.
    pub fn exit(self) -> ExitCode {
        crate::text::print_stdout(&self.stdout);
        crate::text::print_stderr(&self.stderr);
        ExitCode::from(self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    #[test]
    fn an_outcome_gathers_what_it_says_with_its_status() {
        let o = Outcome::failed("no such file")
            .say("report\n")
            .say_err("hint\n");
        assert_eq!(o.status, 1);
        assert_eq!(o.stdout, "report\n");
        assert_eq!(o.stderr, "no such file\nhint\n");
        assert_eq!(Outcome::ok().say_err(""), Outcome::ok());
    }
}
