//! Command-line values checked where clap parses them, so that a bad one is
//! a usage error (exit status 2, one line saying what is wrong) before any
//! work starts, and how clap's errors are shown.

use std::fmt;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Why a value was refused; clap prints it after "invalid value 'V' for
/// '--FLAG <FLAG>': ".
#[derive(Debug, Clone, PartialEq)]
pub enum BadValue {
    /// Not a number at all.
    NotANumber,
    /// A number outside the range the option takes.
    OutOfRange { min: f64, max: f64, value: f64 },
    /// An address without a port: port 0 would serve on a random port that
    /// nobody is told.
    NoPort,
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadValue::NotANumber => write!(f, "not a number"),
            BadValue::OutOfRange { min, max, value } => {
                write!(f, "must be from {min} to {max} (it is {value:?})")
            }
            BadValue::NoPort => write!(
                f,
                "give a port: port 0 would serve on a random port that nothing says"
            ),
        }
    }
}

impl std::error::Error for BadValue {}

/// A parser of a number of seconds from `min` to `max` (no NaN, no
/// infinity).
pub fn seconds_in(
    min: f64,
    max: f64,
) -> impl Fn(&str) -> Result<f64, BadValue> + Clone + Send + Sync + 'static {
    move |text: &str| {
        let value: f64 = text.parse().map_err(|_| BadValue::NotANumber)?;
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(BadValue::OutOfRange { min, max, value })
        }
    }
}

/// A socket address with a port other than 0.
pub fn listen_address(text: &str) -> Result<SocketAddr, Box<dyn std::error::Error + Send + Sync>> {
    let address: SocketAddr = text.parse()?;
    if address.port() == 0 {
        return Err(Box::new(BadValue::NoPort));
    }
    Ok(address)
}

/// Shows a command-line error and gives the exit status: help and version
/// on standard output with 0; a usage error on standard error with 2, its
/// first line saying what is wrong.
///
/// clap's own messages already do, but for two kinds, which are rewritten:
/// missing required arguments (clap lists them on the lines below), and no
/// command at all (clap shows the whole help, which says nothing is wrong).
pub fn show(error: &clap::Error, mut command: clap::Command) -> ExitCode {
    let reason = match error.kind() {
        ErrorKind::MissingRequiredArgument => match error.get(ContextKind::InvalidArg) {
            Some(ContextValue::Strings(missing)) => Some(match missing.as_slice() {
                [one] => format!("the required argument {one} was not given"),
                many => format!("the required arguments {} were not given", many.join(", ")),
            }),
            _ => None,
        },
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let names: Vec<&str> = command
                .get_subcommands()
                .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
                .map(clap::Command::get_name)
                .collect();
            Some(format!("no command given: one of {}", names.join(", ")))
        }
        _ => None,
    };
    let Some(reason) = reason else {
        let _ = error.print();
        return match error.exit_code() {
            0 => ExitCode::SUCCESS,
            _ => ExitCode::from(2),
        };
    };
    // What clap says after its first paragraph: the usage, and where to
    // read more (for no command, clap's text is the whole help instead).
    let rest = if error.kind() == ErrorKind::MissingRequiredArgument {
        let rendered = error.render().to_string();
        rendered
            .split_once("\n\n")
            .map_or(String::new(), |(_, rest)| rest.trim_end().to_owned())
    } else {
        format!(
            "{}\n\nFor more information, try '--help'.",
            command.render_usage()
        )
    };
    eprintln!("error: {reason}\n\n{rest}");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_numbers_in_range() {
        let parse = seconds_in(6.0, 86_400.0);
        assert_eq!(parse("6"), Ok(6.0));
        assert_eq!(parse("86400"), Ok(86_400.0));
        assert_eq!(parse("abc"), Err(BadValue::NotANumber));
        assert_eq!(parse(""), Err(BadValue::NotANumber));
        for text in ["nan", "inf", "-inf", "1e300", "-5", "0", "5.999"] {
            assert!(
                matches!(parse(text), Err(BadValue::OutOfRange { .. })),
                "{text}"
            );
        }
        assert_eq!(
            parse("nan").unwrap_err().to_string(),
            "must be from 6 to 86400 (it is NaN)"
        );
    }

    #[test]
    fn a_listen_address_needs_a_port() {
        assert!(listen_address("127.0.0.1:9184").is_ok());
        assert!(listen_address("127.0.0.1:0").is_err());
        assert!(listen_address("127.0.0.1").is_err());
        assert!(listen_address("").is_err());
    }
}
