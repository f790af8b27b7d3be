//! Kubernetes' channel protocol for `exec` and `attach` over WebSocket
//! (`v5.channel.k8s.io`, and `v4.channel.k8s.io` for older clients).
//!
//! Every binary message is one channel byte followed by data:
//! 0 stdin (client → server), 1 stdout, 2 stderr, 3 error (a
//! `metav1.Status` JSON, sent once at the end), 4 resize (client → server,
//! `{"Width":80,"Height":24}`). `v5` adds channel 255, "close stream": the
//! message `[255, 0]` means the client has no more stdin (EOF). `v4` has no
//! way to half-close, so stdin ends only with the connection.
//!
//! The server first sends an empty message on the lowest channel it will
//! write (stdout, else stderr, else error) as kubelet does, then streams,
//! then sends the Status and a normal close.

use serde::Deserialize;
use serde_json::{json, Value};

/// The v5 subprotocol (close-stream signal); kubectl 1.30+ asks only for it.
pub const V5: &str = "v5.channel.k8s.io";
/// The v4 subprotocol (Status on the error channel, resize channel).
pub const V4: &str = "v4.channel.k8s.io";
/// The subprotocols served, most preferred first.
pub const PROTOCOLS: [&str; 2] = [V5, V4];

/// Standard input, client to server.
pub const STDIN: u8 = 0;
/// Standard output.
pub const STDOUT: u8 = 1;
/// Standard error.
pub const STDERR: u8 = 2;
/// The final `Status`.
pub const ERROR: u8 = 3;
/// Terminal size changes, client to server.
pub const RESIZE: u8 = 4;
/// v5's close-stream signal; its data is the channel being closed.
pub const CLOSE: u8 = 255;

/// The negotiated subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `v4.channel.k8s.io`.
    V4,
    /// `v5.channel.k8s.io`.
    V5,
}

impl Protocol {
    /// The protocol of a negotiated subprotocol name (`None` for anything
    /// not served; a client that negotiated nothing is refused).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            V5 => Some(Self::V5),
            V4 => Some(Self::V4),
            _ => None,
        }
    }
}

/// A terminal size, as the resize channel carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// A message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Bytes for the process's stdin.
    Stdin(Vec<u8>),
    /// The terminal was resized.
    Resize(TerminalSize),
    /// The client closed one of its streams (v5 only).
    Close(u8),
    /// Anything else (empty, unknown channel, bad resize JSON): ignored.
    Ignored,
}

/// One message: the channel byte, then the data.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(data.len() + 1);
    message.push(channel);
    message.extend_from_slice(data);
    message
}

/// Decodes a binary message from the client.
pub fn parse(protocol: Protocol, message: &[u8]) -> ClientMessage {
    let Some((&channel, data)) = message.split_first() else {
        return ClientMessage::Ignored;
    };
    match channel {
        STDIN => ClientMessage::Stdin(data.to_vec()),
        RESIZE => serde_json::from_slice(data)
            .map(ClientMessage::Resize)
            .unwrap_or(ClientMessage::Ignored),
        CLOSE if protocol == Protocol::V5 => data
            .first()
            .map(|c| ClientMessage::Close(*c))
            .unwrap_or(ClientMessage::Ignored),
        _ => ClientMessage::Ignored,
    }
}

/// What the client asked for, from the query (`command` repeated,
/// `container`, `stdin`, `stdout`, `stderr`, `tty`); booleans parse like
/// Go's `strconv.ParseBool`, and stdout/stderr default to true as
/// `PodExecOptions` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOptions {
    /// The command and its arguments (exec only).
    pub command: Vec<String>,
    /// The container named in the query, if any.
    pub container: Option<String>,
    /// Pass the client's stdin.
    pub stdin: bool,
    /// Send stdout.
    pub stdout: bool,
    /// Send stderr (always off with a TTY, whose output is one stream).
    pub stderr: bool,
    /// Allocate a terminal.
    pub tty: bool,
}

fn go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

impl StreamOptions {
    /// Options from decoded query pairs.
    pub fn from_pairs(pairs: &[(String, String)]) -> Self {
        let flag = |key: &str, default: bool| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| go_bool(v))
                .unwrap_or(default)
        };
        let tty = flag("tty", false);
        Self {
            command: pairs
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect(),
            container: pairs
                .iter()
                .find(|(k, v)| k == "container" && !v.is_empty())
                .map(|(_, v)| v.clone()),
            stdin: flag("stdin", false),
            stdout: flag("stdout", true),
            stderr: flag("stderr", true) && !tty,
            tty,
        }
    }

    /// The channel of the empty "ready" message.
    pub fn first_channel(&self) -> u8 {
        if self.stdout {
            STDOUT
        } else if self.stderr {
            STDERR
        } else {
            ERROR
        }
    }
}

/// The `Status` of a command that exited with 0 (or an attach that ended).
pub fn success() -> Value {
    json!({"metadata": {}, "status": "Success"})
}

/// The `Status` of a command that exited with `code` (non-zero): kubectl
/// reads the code from the `ExitCode` cause and exits with it.
pub fn non_zero_exit(command: &[String], code: i32) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: command '{}' exited with {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The `Status` of a command that could not run at all.
pub fn internal_error(cause: &str) -> Value {
    let message = format!("error executing command in container: {cause}");
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

/// The `Status` for how a command ended.
pub fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        success()
    } else {
        non_zero_exit(command, code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_message_is_the_channel_byte_then_the_data() {
        assert_eq!(frame(STDOUT, b"hi\n"), vec![1, b'h', b'i', b'\n']);
        assert_eq!(frame(ERROR, b""), vec![3]);
    }

    #[test]
    fn client_messages_decode_by_channel() {
        assert_eq!(
            parse(Protocol::V5, &[0, b'a']),
            ClientMessage::Stdin(b"a".to_vec())
        );
        assert_eq!(
            parse(Protocol::V4, b"\x04{\"Width\":100,\"Height\":30}"),
            ClientMessage::Resize(TerminalSize {
                width: 100,
                height: 30
            })
        );
        assert_eq!(parse(Protocol::V4, b"\x04not json"), ClientMessage::Ignored);
        assert_eq!(parse(Protocol::V5, &[]), ClientMessage::Ignored);
        assert_eq!(parse(Protocol::V5, &[7, 1]), ClientMessage::Ignored);
    }

    #[test]
    fn only_v5_knows_the_close_stream_signal() {
        assert_eq!(parse(Protocol::V5, &[255, 0]), ClientMessage::Close(0));
        assert_eq!(parse(Protocol::V4, &[255, 0]), ClientMessage::Ignored);
        assert_eq!(Protocol::from_name(V5), Some(Protocol::V5));
        assert_eq!(Protocol::from_name("channel.k8s.io"), None);
    }

    #[test]
    fn a_non_zero_exit_carries_the_code_as_an_exit_code_cause() {
        let status = exit_status(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        assert_eq!(
            exit_status(&[], 0),
            json!({"metadata": {}, "status": "Success"})
        );
        let internal = internal_error("no such file");
        assert_eq!(internal["reason"], "InternalError");
        assert_eq!(internal["code"], 500);
    }

    #[test]
    fn options_read_repeated_commands_and_go_booleans() {
        let options = StreamOptions::from_pairs(&pairs(&[
            ("command", "sh"),
            ("command", "-c"),
            ("command", "echo a; echo b"),
            ("container", "app"),
            ("stdin", "True"),
            ("stderr", "false"),
        ]));
        assert_eq!(options.command, vec!["sh", "-c", "echo a; echo b"]);
        assert_eq!(options.container.as_deref(), Some("app"));
        assert!(options.stdin && options.stdout && !options.stderr && !options.tty);
        assert_eq!(options.first_channel(), STDOUT);
    }

    #[test]
    fn a_terminal_has_no_separate_stderr() {
        let options = StreamOptions::from_pairs(&pairs(&[("tty", "1"), ("stdout", "0")]));
        assert!(options.tty && !options.stderr && !options.stdout);
        assert_eq!(options.first_channel(), ERROR);
    }
}
