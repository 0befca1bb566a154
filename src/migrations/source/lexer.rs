//! Dialect-aware SQL tokenizer behind the statement splitter: words, quoted identifiers,
//! string and dollar-quoted literals, comments, and the active statement delimiter.
//! Invariant: tokens tile the input exactly (no byte skipped, every bound on a char
//! boundary), so a source slice between token bounds is always the original text.

use super::split::{Dialect, SplitError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// Unquoted identifier or keyword.
    Word,
    QuotedIdent,
    /// Any string literal, including PostgreSQL `E''` and dollar-quoted bodies.
    Str,
    Number,
    Whitespace,
    LineComment,
    BlockComment,
    /// MySQL `/*! … */` and `/*+ … */`: the server runs or reads them, so they are code.
    ExecComment,
    /// The active statement delimiter (`;` unless a MySQL `DELIMITER` line changed it).
    Delimiter,
    /// Any other single character (operators, parentheses, a `;` that is not the delimiter).
    Punct,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
    /// 1-based line of the token's first byte.
    pub line: usize,
}

impl Token {
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        src.get(self.start..self.end).unwrap_or("")
    }

    /// Whitespace and ordinary comments: never part of a statement's meaning.
    pub fn is_trivia(&self) -> bool {
        matches!(
            self.kind,
            TokenKind::Whitespace | TokenKind::LineComment | TokenKind::BlockComment
        )
    }

    pub fn is_word(&self, src: &str, keyword: &str) -> bool {
        self.kind == TokenKind::Word && self.text(src).eq_ignore_ascii_case(keyword)
    }

    pub fn is_punct(&self, src: &str, ch: char) -> bool {
        self.kind == TokenKind::Punct && self.text(src).starts_with(ch)
    }
}

/// A cursor over one script; `Copy` so callers can peek ahead on a throwaway copy.
#[derive(Clone, Copy, Debug)]
pub struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    dialect: Dialect,
    delimiter: &'a str,
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str, dialect: Dialect) -> Self {
        Lexer {
            src,
            pos: 0,
            line: 1,
            dialect,
            delimiter: ";",
        }
    }

    pub fn delimiter(&self) -> &'a str {
        self.delimiter
    }

    pub fn set_delimiter(&mut self, delimiter: &'a str) {
        self.delimiter = delimiter;
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Moves forward to `end`, keeping the line count right; used to consume a
    /// `DELIMITER` directive, which is a client command and not SQL.
    pub fn skip_to(&mut self, end: usize) {
        let end = end.min(self.src.len());
        if end <= self.pos {
            return;
        }
        let bytes = self.src.as_bytes();
        for i in self.pos..end {
            // CRLF counts once; a lone CR (classic Mac) counts as a line break too.
            let lone_cr = bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n');
            if bytes[i] == b'\n' || lone_cr {
                self.line += 1;
            }
        }
        self.pos = end;
    }

    pub fn next_token(&mut self) -> Result<Option<Token>, SplitError> {
        let Some(&first) = self.src.as_bytes().get(self.pos) else {
            return Ok(None);
        };
        let (kind, end) = self.scan(first)?;
        let token = Token {
            kind,
            start: self.pos,
            end,
            line: self.line,
        };
        self.skip_to(end);
        Ok(Some(token))
    }

    /// The next `n` significant tokens without consuming them; a lexing error simply
    /// shortens the answer (the real read will report it).
    pub fn peek_significant(&self, n: usize) -> Vec<Token> {
        let mut copy = *self;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match copy.next_token() {
                Ok(Some(tok)) if tok.is_trivia() => {}
                Ok(Some(tok)) => out.push(tok),
                _ => break,
            }
        }
        out
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn byte(&self, at: usize) -> Option<u8> {
        self.src.as_bytes().get(at).copied()
    }

    fn scan(&self, first: u8) -> Result<(TokenKind, usize), SplitError> {
        let pos = self.pos;
        let rest = self.rest();
        // The delimiter wins over everything else outside quotes, as in the mysql client.
        if !self.delimiter.is_empty() && rest.starts_with(self.delimiter) {
            return Ok((TokenKind::Delimiter, pos + self.delimiter.len()));
        }
        let mysql = self.dialect == Dialect::MySql;
        match first {
            b if b.is_ascii_whitespace() => Ok((TokenKind::Whitespace, self.run(pos, is_space))),
            b'-' if rest.starts_with("--") && self.dash_dash_is_comment() => {
                Ok((TokenKind::LineComment, self.line_end(pos)))
            }
            b'#' if mysql => Ok((TokenKind::LineComment, self.line_end(pos))),
            b'/' if rest.starts_with("/*") => self.block_comment(),
            b'\'' => self.quoted(pos, b'\'', mysql, TokenKind::Str),
            b'"' if mysql => self.quoted(pos, b'"', true, TokenKind::Str),
            b'"' => self.quoted(pos, b'"', false, TokenKind::QuotedIdent),
            b'`' if self.dialect != Dialect::Postgres => {
                self.quoted(pos, b'`', false, TokenKind::QuotedIdent)
            }
            b'[' if self.dialect == Dialect::Sqlite => self.bracketed(),
            b'$' if self.dialect == Dialect::Postgres => match self.dollar_tag() {
                Some(tag) => self.dollar_body(tag),
                None => Ok((TokenKind::Punct, pos + 1)),
            },
            b'0'..=b'9' => Ok((TokenKind::Number, self.run(pos, is_number_byte))),
            b if is_ident_start(b) => self.word(),
            _ => {
                let width = rest.chars().next().map_or(1, char::len_utf8);
                Ok((TokenKind::Punct, pos + width))
            }
        }
    }

    fn run(&self, from: usize, keep: fn(u8) -> bool) -> usize {
        let bytes = self.src.as_bytes();
        let mut end = from;
        while end < bytes.len() && keep(bytes[end]) {
            end += 1;
        }
        end
    }

    /// MySQL only treats `--` as a comment when a space or control character follows.
    fn dash_dash_is_comment(&self) -> bool {
        if self.dialect != Dialect::MySql {
            return true;
        }
        self.byte(self.pos + 2)
            .is_none_or(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    }

    fn line_end(&self, from: usize) -> usize {
        self.run(from, |b| b != b'\n' && b != b'\r')
    }

    fn block_comment(&self) -> Result<(TokenKind, usize), SplitError> {
        let bytes = self.src.as_bytes();
        let nests = self.dialect == Dialect::Postgres;
        let mut depth = 0usize;
        let mut i = self.pos;
        while i + 1 < bytes.len() {
            match (bytes[i], bytes[i + 1]) {
                (b'/', b'*') if depth == 0 || nests => {
                    depth += 1;
                    i += 2;
                }
                (b'*', b'/') => {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        return Ok((self.comment_kind(), i));
                    }
                }
                _ => i += 1,
            }
        }
        Err(SplitError::UnterminatedComment { line: self.line })
    }

    fn comment_kind(&self) -> TokenKind {
        let rest = self.rest();
        let executable = rest.starts_with("/*!") || rest.starts_with("/*+");
        if self.dialect == Dialect::MySql && executable {
            TokenKind::ExecComment
        } else {
            TokenKind::BlockComment
        }
    }

    /// A literal or identifier opened by `quote` at `open`; a doubled quote is an escaped
    /// quote everywhere, a backslash escapes the next character only where `backslash`.
    fn quoted(
        &self,
        open: usize,
        quote: u8,
        backslash: bool,
        kind: TokenKind,
    ) -> Result<(TokenKind, usize), SplitError> {
        let bytes = self.src.as_bytes();
        let mut i = open + 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if backslash => i += 2,
                b if b == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
                b if b == quote => return Ok((kind, i + 1)),
                _ => i += 1,
            }
        }
        let line = self.line;
        let quote = char::from(quote);
        Err(match kind {
            TokenKind::QuotedIdent => SplitError::UnterminatedIdentifier { line, quote },
            _ => SplitError::UnterminatedString { line, quote },
        })
    }

    fn bracketed(&self) -> Result<(TokenKind, usize), SplitError> {
        match self.rest().find(']') {
            Some(close) => Ok((TokenKind::QuotedIdent, self.pos + close + 1)),
            None => Err(SplitError::UnterminatedIdentifier {
                line: self.line,
                quote: '[',
            }),
        }
    }

    /// The opening `$tag$` at the cursor, if any; `$1` parameters never qualify because
    /// a tag cannot start with a digit.
    fn dollar_tag(&self) -> Option<&'a str> {
        let bytes = self.src.as_bytes();
        let mut i = self.pos + 1;
        if bytes.get(i).is_some_and(|&b| is_ident_start(b)) {
            i = self.run(i, |b| is_ident_start(b) || b.is_ascii_digit());
        }
        (bytes.get(i) == Some(&b'$')).then(|| self.src.get(self.pos..=i))?
    }

    fn dollar_body(&self, tag: &str) -> Result<(TokenKind, usize), SplitError> {
        let body_start = self.pos + tag.len();
        let body = self.src.get(body_start..).unwrap_or("");
        match body.find(tag) {
            Some(close) => Ok((TokenKind::Str, body_start + close + tag.len())),
            None => Err(SplitError::UnterminatedDollarQuote {
                line: self.line,
                tag: tag.to_string(),
            }),
        }
    }

    fn word(&self) -> Result<(TokenKind, usize), SplitError> {
        let bytes = self.src.as_bytes();
        let mut end = self.pos + 1;
        // A custom delimiter may be made of identifier bytes (`END$$`); the mysql client
        // ends the statement there, so the word ends there too.
        while end < bytes.len()
            && is_ident_byte(bytes[end])
            && !self
                .src
                .get(end..)
                .is_some_and(|r| r.starts_with(self.delimiter))
        {
            end += 1;
        }
        let escape_string = self.dialect == Dialect::Postgres
            && end == self.pos + 1
            && matches!(self.byte(self.pos), Some(b'e' | b'E'))
            && self.byte(end) == Some(b'\'');
        if escape_string {
            let (_, close) = self.quoted(end, b'\'', true, TokenKind::Str)?;
            return Ok((TokenKind::Str, close));
        }
        Ok((TokenKind::Word, end))
    }
}

/// The first `limit` tokens of `src` that are not whitespace or comments; stops early at
/// a lexing error (callers classify statements that `split` already accepted).
pub fn significant_tokens(src: &str, dialect: Dialect, limit: usize) -> Vec<Token> {
    let mut lexer = Lexer::new(src, dialect);
    let mut out = Vec::new();
    while out.len() < limit {
        match lexer.next_token() {
            Ok(Some(tok)) if tok.is_trivia() => {}
            Ok(Some(tok)) => out.push(tok),
            _ => break,
        }
    }
    out
}

fn is_space(b: u8) -> bool {
    b.is_ascii_whitespace()
}

/// Non-ASCII bytes count as identifier bytes in all three dialects; since every byte of
/// a multi-byte UTF-8 character is ≥ 0x80, runs of them always end on a char boundary.
fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_byte(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

fn is_number_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str, dialect: Dialect) -> Vec<(TokenKind, &str)> {
        let mut lexer = Lexer::new(src, dialect);
        let mut out = Vec::new();
        while let Some(tok) = lexer.next_token().expect("lexes") {
            if tok.kind != TokenKind::Whitespace {
                out.push((tok.kind, tok.text(src)));
            }
        }
        out
    }

    #[test]
    fn tokens_tile_the_input_exactly() {
        let src = "SELECT 'é''x', \"q\" -- c\n/* b */ $t$ body $t$; café";
        let mut lexer = Lexer::new(src, Dialect::Postgres);
        let mut rebuilt = String::new();
        while let Some(tok) = lexer.next_token().expect("lexes") {
            rebuilt.push_str(tok.text(src));
        }
        assert_eq!(rebuilt, src);
    }

    #[test]
    fn reads_dollar_parameters_as_punctuation_not_quotes() {
        let toks = kinds("$1 + $2", Dialect::Postgres);
        assert_eq!(toks[0], (TokenKind::Punct, "$"));
        assert_eq!(toks[1], (TokenKind::Number, "1"));
    }

    #[test]
    fn keeps_dollar_signs_inside_identifiers() {
        let toks = kinds("a$$b $$x$$", Dialect::Postgres);
        assert_eq!(
            toks,
            vec![(TokenKind::Word, "a$$b"), (TokenKind::Str, "$$x$$")]
        );
    }

    #[test]
    fn reads_escape_strings_with_backslashes_in_postgres() {
        let toks = kinds(r"E'it\'s' 'a\' x", Dialect::Postgres);
        assert_eq!(toks[0], (TokenKind::Str, r"E'it\'s'"));
        assert_eq!(toks[1], (TokenKind::Str, r"'a\'"));
    }

    #[test]
    fn requires_a_space_after_double_dash_in_mysql() {
        let toks = kinds("1--2 -- c", Dialect::MySql);
        assert_eq!(toks[1], (TokenKind::Punct, "-"));
        assert_eq!(toks.last(), Some(&(TokenKind::LineComment, "-- c")));
        let pg = kinds("1--2", Dialect::Postgres);
        assert_eq!(pg[1], (TokenKind::LineComment, "--2"));
    }

    #[test]
    fn nests_block_comments_only_in_postgres() {
        let src = "/* a /* b */ c */";
        assert_eq!(
            kinds(src, Dialect::Postgres),
            vec![(TokenKind::BlockComment, src)]
        );
        let mysql = kinds(src, Dialect::MySql);
        assert_eq!(mysql[0], (TokenKind::BlockComment, "/* a /* b */"));
    }

    #[test]
    fn treats_mysql_versioned_comments_as_code() {
        let toks = kinds("/*!40101 SET NAMES utf8 */", Dialect::MySql);
        assert_eq!(toks[0].0, TokenKind::ExecComment);
    }

    #[test]
    fn quotes_identifiers_per_dialect() {
        assert_eq!(
            kinds("`a``b`", Dialect::MySql)[0],
            (TokenKind::QuotedIdent, "`a``b`")
        );
        assert_eq!(
            kinds("[a b]", Dialect::Sqlite)[0],
            (TokenKind::QuotedIdent, "[a b]")
        );
        assert_eq!(kinds("\"a\"", Dialect::MySql)[0], (TokenKind::Str, "\"a\""));
        assert_eq!(kinds("a[1]", Dialect::Postgres)[1], (TokenKind::Punct, "["));
    }

    #[test]
    fn reports_the_line_where_an_unterminated_literal_opens() {
        let mut lexer = Lexer::new("\n\nSELECT 'oops\n;", Dialect::Sqlite);
        let err = loop {
            match lexer.next_token() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("expected an error"),
                Err(err) => break err,
            }
        };
        assert_eq!(
            err,
            SplitError::UnterminatedString {
                line: 3,
                quote: '\''
            }
        );
    }

    #[test]
    fn counts_crlf_and_lone_cr_as_one_line_each() {
        let mut lexer = Lexer::new("a\r\nb\rc", Dialect::Sqlite);
        let lines: Vec<usize> = std::iter::from_fn(|| lexer.next_token().ok().flatten())
            .filter(|t| t.kind == TokenKind::Word)
            .map(|t| t.line)
            .collect();
        assert_eq!(lines, vec![1, 2, 3]);
    }
}
