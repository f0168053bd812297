//! The Falco condition language: syntax tree, scanner and parser. Resolution of macros and
//! lists, and compilation to an evaluable form, live in `rules::compile`.

pub mod ast;
mod lexer;
mod parser;

pub use parser::{MAX_DEPTH, ParseError, TRANSFORMERS, parse, parse_list, parse_operand_prefix};
