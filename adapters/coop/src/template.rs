//! The fast path of a mapping program: most programs are one object whose fields are read from
//! the record (`{ operatore: .["Operatore"], tipo_servizio: ($tables.servizio[.["Servizio"]] //
//! .["Servizio"]), utente: .utente.codiceFiscale, ... }`). Such a program is recognised when the
//! mapping loads and run here without the jq interpreter, with jq's meaning: indexing `null`
//! gives `null`, a missing key gives `null`, `a // b` is `a` unless it is `null` or `false`.
//!
//! Whenever a record takes the fast path somewhere jq would fail (indexing a string, say), the
//! answer is "don't know" and the interpreter runs the whole program, so its result and its error
//! messages are always jq's. Programs with anything else (pipes, functions, `?`, literals other
//! than strings and `null`) have no fast path.

use jaq_json::Val;

/// A recognised program: the fields of the object, in order.
#[derive(Debug)]
pub(crate) struct Template {
    fields: Vec<(Val, Expr)>,
}

#[derive(Debug)]
enum Expr {
    /// `.a.b`, `.["A"]`, `."a"`: keys from the record.
    Path(Vec<Val>),
    /// `$tables.t[expr]` (`table` is `$tables.t`, resolved when the mapping loads).
    Lookup { table: Val, key: Box<Expr> },
    /// `$tables.t`.
    Table(Val),
    /// `a // b`.
    Alt(Box<Expr>, Box<Expr>),
    /// A string literal or `null`.
    Lit(Val),
}

impl Template {
    /// The template of `program`, if it has one; `tables` is the value of `$tables`.
    pub(crate) fn parse(program: &str, tables: &Val) -> Option<Template> {
        let mut p = Parser { s: program.as_bytes(), i: 0, tables };
        p.ws();
        p.eat(b'{')?;
        let mut fields = Vec::new();
        loop {
            p.ws();
            if p.eat(b'}').is_some() {
                break;
            }
            let key = match p.peek()? {
                b'"' => p.string()?,
                _ => p.ident()?.to_string(),
            };
            p.ws();
            p.eat(b':')?;
            let value = p.alt()?;
            fields.push((Val::utf8_str(key), value));
            p.ws();
            if p.eat(b',').is_none() {
                p.ws();
                p.eat(b'}')?;
                break;
            }
        }
        p.ws();
        (p.i == p.s.len()).then_some(Template { fields })
    }

    /// The program's output on `record`, or `None` where only jq can say (it would fail).
    pub(crate) fn run(&self, record: &Val) -> Option<Val> {
        let mut map = jaq_json::Map::default();
        for (key, expr) in &self.fields {
            map.insert(key.clone(), expr.eval(record)?);
        }
        Some(Val::obj(map))
    }
}

/// `v[key]` as jq has it, or `None` when jq would fail.
fn index(v: &Val, key: &Val) -> Option<Val> {
    match v {
        Val::Null => Some(Val::Null),
        Val::Obj(o) => Some(o.get(key).cloned().unwrap_or(Val::Null)),
        _ => None,
    }
}

impl Expr {
    fn eval(&self, record: &Val) -> Option<Val> {
        match self {
            Expr::Path(keys) => {
                let mut v = record.clone();
                for k in keys {
                    v = index(&v, k)?;
                }
                Some(v)
            }
            Expr::Lookup { table, key } => index(table, &key.eval(record)?),
            Expr::Table(t) => Some(t.clone()),
            Expr::Alt(a, b) => match a.eval(record)? {
                Val::Null | Val::Bool(false) => b.eval(record),
                v => Some(v),
            },
            Expr::Lit(v) => Some(v.clone()),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    tables: &'a Val,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }

    fn eat_str(&mut self, t: &str) -> Option<()> {
        self.s[self.i..].starts_with(t.as_bytes()).then(|| self.i += t.len())
    }

    /// Spaces and `#` comments.
    fn ws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.i += 1,
                b'#' => {
                    while self.peek().is_some_and(|b| b != b'\n') {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn ident(&mut self) -> Option<&'a str> {
        let start = self.i;
        while self.peek().is_some_and(|b| b == b'_' || b.is_ascii_alphanumeric()) {
            self.i += 1;
        }
        let id = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        id.chars().next().filter(|c| !c.is_ascii_digit()).map(|_| id)
    }

    /// A string literal without escapes or interpolation.
    fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => return None,
                _ => self.i += 1,
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?.to_string();
        self.i += 1;
        Some(text)
    }

    /// `term (// term)*`.
    fn alt(&mut self) -> Option<Expr> {
        self.ws();
        let first = self.term()?;
        self.ws();
        if self.eat_str("//").is_some() {
            if self.peek() == Some(b'=') {
                return None;
            }
            let rest = self.alt()?;
            return Some(Expr::Alt(Box::new(first), Box::new(rest)));
        }
        Some(first)
    }

    fn term(&mut self) -> Option<Expr> {
        let term = match self.peek()? {
            b'(' => {
                self.i += 1;
                let e = self.alt()?;
                self.ws();
                self.eat(b')')?;
                e
            }
            b'"' => Expr::Lit(Val::utf8_str(self.string()?)),
            b'.' => Expr::Path(self.keys()?),
            b'$' => {
                self.eat_str("$tables")?;
                if self.peek().is_some_and(|b| b == b'_' || b.is_ascii_alphanumeric()) {
                    return None;
                }
                let mut table = self.tables.clone();
                for k in self.keys()? {
                    table = index(&table, &k)?;
                }
                self.ws();
                if self.eat(b'[').is_some() {
                    let key = self.alt()?;
                    self.ws();
                    self.eat(b']')?;
                    Expr::Lookup { table, key: Box::new(key) }
                } else {
                    Expr::Table(table)
                }
            }
            _ => {
                let word = self.ident()?;
                if word != "null" {
                    return None;
                }
                Expr::Lit(Val::Null)
            }
        };
        // Anything after a term but `//`, `,`, `}`, `)` or `]` (a pipe, `?`, `+`...) is
        // beyond the fast path.
        self.ws();
        match self.peek() {
            None | Some(b',' | b'}' | b')' | b']') => Some(term),
            Some(b'/') if self.s.get(self.i + 1) == Some(&b'/') => Some(term),
            _ => None,
        }
    }

    /// `.a`, `.["a"]`, `."a"` (at least one), then more of them and `.a` / `["a"]` steps.
    fn keys(&mut self) -> Option<Vec<Val>> {
        let mut keys = Vec::new();
        loop {
            if self.eat(b'.').is_some() {
                match self.peek() {
                    Some(b'[') => keys.push(self.bracket()?),
                    Some(b'"') => keys.push(Val::utf8_str(self.string()?)),
                    _ => keys.push(Val::utf8_str(self.ident()?.to_string())),
                }
            } else if self.peek() == Some(b'[') && !keys.is_empty() && self.s.get(self.i + 1) == Some(&b'"') {
                keys.push(self.bracket()?);
            } else {
                break;
            }
        }
        (!keys.is_empty()).then_some(keys)
    }

    /// `["a"]`.
    fn bracket(&mut self) -> Option<Val> {
        self.eat(b'[')?;
        self.ws();
        let key = self.string()?;
        self.ws();
        self.eat(b']')?;
        Some(Val::utf8_str(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> Val {
        let mut servizio = jaq_json::Map::default();
        servizio.insert(Val::utf8_str("ASS.DOM"), Val::utf8_str("SAD"));
        let mut t = jaq_json::Map::default();
        t.insert(Val::utf8_str("servizio"), Val::obj(servizio));
        Val::obj(t)
    }

    #[test]
    fn recognises_record_templates() {
        let t = tables();
        for ok in [
            r#"{ a: .["A"], b: .b.c, "c": ."x y", d: ($tables.servizio[.["S"]] // .["S"]), e: null, f: "k" }"#,
            "# comment\n{\n  a: .a, # why\n  b: $tables.servizio[.s],\n}\n",
            "{}",
            r#"{ a: .a // .b // "x" }"#,
        ] {
            assert!(Template::parse(ok, &t).is_some(), "{ok}");
        }
        for no in [
            ".",
            "{ a: .a | ascii_upcase }",
            "{ a: .a? }",
            "{ a: .a + 1 }",
            "{ a: 1 }",
            "{ a: true }",
            r#"{ a: "x\(.a)" }"#,
            "{ a: .a }, { a: .b }",
            "{ a: $other.a }",
            "{ a: .a //= 1 }",
            "{ (.k): .a }",
            "{ a: .a[0] }",
            "{ a }",
        ] {
            assert!(Template::parse(no, &t).is_none(), "{no}");
        }
    }

    #[test]
    fn has_jq_meaning_or_declines() {
        let t = tables();
        let prog = Template::parse(
            r#"{ s: ($tables.servizio[.["S"]] // .["S"]), n: .u.cf, m: .missing, l: $tables.none[.S] }"#,
            &t,
        )
        .expect("template");
        let mut rec = jaq_json::Map::default();
        rec.insert(Val::utf8_str("S"), Val::utf8_str("ASS.DOM"));
        rec.insert(Val::utf8_str("u"), Val::Null);
        let out = prog.run(&Val::obj(rec.clone())).expect("fast path");
        let Val::Obj(o) = out else { panic!("object") };
        assert_eq!(o.get(&Val::utf8_str("s")), Some(&Val::utf8_str("SAD")));
        assert_eq!(o.get(&Val::utf8_str("n")), Some(&Val::Null));
        assert_eq!(o.get(&Val::utf8_str("m")), Some(&Val::Null));
        assert_eq!(o.get(&Val::utf8_str("l")), Some(&Val::Null));
        // Indexing a string: jq fails, so the fast path declines.
        rec.insert(Val::utf8_str("u"), Val::utf8_str("text"));
        assert!(prog.run(&Val::obj(rec)).is_none());
    }
}
