//! The Falco condition language: syntax tree, scanner and parser. Lists are substituted into
//! the text before parsing (`rules::lists`); macros are resolved, and conditions compiled to
//! an evaluable form, in `rules::compile`.

pub mod ast;
mod lexer;
mod parser;

pub use parser::{MAX_DEPTH, ParseError, TRANSFORMERS, parse, parse_operand_prefix};
