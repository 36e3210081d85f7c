//! Mapping programs may not recurse.
//!
//! jaq evaluates a call to a filter defined in jq by recursing on the thread's stack: a definition
//! that calls itself (`def f: [f]; f`, often a slip for a call to a builtin of the same name) runs
//! until the stack is exhausted, which aborts the whole gateway, not one upload. A record of a
//! delivery needs no recursion (`map`, `reduce`, `..` and the code tables cover what a mapping
//! does), so a program whose definitions call themselves, directly or through definitions nested
//! in them, is refused when the mapping is loaded, naming the definition.

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::path::Part;

/// The first definition of `code` that calls itself, as (its name as written in `code`, its
/// arity); `None` when no definition does or `code` does not parse (compiling says why).
pub(crate) fn recursive_definition(code: &str) -> Option<(&str, usize)> {
    let term = jaq_core::load::parse(code, |p| p.term())?;
    let mut scope = Scope::default();
    scope.term(&term)
}

/// A name in scope: a definition (`open` while its own body is being read) or a parameter.
struct Name<'s> {
    name: &'s str,
    arity: usize,
    open: bool,
}

#[derive(Default)]
struct Scope<'s> {
    names: Vec<Name<'s>>,
}

impl<'s> Scope<'s> {
    fn term(&mut self, t: &Term<&'s str>) -> Option<(&'s str, usize)> {
        match t {
            Term::Id | Term::Recurse | Term::Num(_) | Term::Var(_) | Term::Break(_) => None,
            Term::Str(_, parts) => parts.iter().find_map(|p| match p {
                StrPart::Term(t) => self.term(t),
                StrPart::Str(_) | StrPart::Char(_) => None,
            }),
            Term::Arr(t) => t.as_deref().and_then(|t| self.term(t)),
            Term::Obj(entries) => entries
                .iter()
                .find_map(|(k, v)| self.term(k).or_else(|| v.as_ref().and_then(|v| self.term(v)))),
            Term::Neg(t) | Term::Label(_, t) => self.term(t),
            Term::BinOp(l, op, r) => {
                let pattern = match op {
                    BinaryOp::Pipe(Some(p)) => self.pattern(p),
                    _ => None,
                };
                pattern.or_else(|| self.term(l)).or_else(|| self.term(r))
            }
            Term::Fold(_, xs, p, args) => {
                self.term(xs).or_else(|| self.pattern(p)).or_else(|| args.iter().find_map(|a| self.term(a)))
            }
            Term::TryCatch(t, catch) => self.term(t).or_else(|| catch.as_deref().and_then(|c| self.term(c))),
            Term::IfThenElse(branches, otherwise) => branches
                .iter()
                .find_map(|(cond, then)| self.term(cond).or_else(|| self.term(then)))
                .or_else(|| otherwise.as_deref().and_then(|t| self.term(t))),
            Term::Def(defs, rest) => {
                let mark = self.names.len();
                let found = defs.iter().find_map(|d| self.def(d)).or_else(|| self.term(rest));
                self.names.truncate(mark);
                found
            }
            Term::Call(name, args) => {
                let target = self.names.iter().rev().find(|n| n.name == *name && n.arity == args.len());
                match target {
                    Some(n) if n.open => Some((*name, args.len())),
                    _ => args.iter().find_map(|a| self.term(a)),
                }
            }
            Term::Path(t, path) => self.term(t).or_else(|| {
                path.0.iter().find_map(|(part, _)| match part {
                    Part::Index(i) => self.term(i),
                    Part::Range(from, to) => from
                        .as_ref()
                        .and_then(|f| self.term(f))
                        .or_else(|| to.as_ref().and_then(|t| self.term(t))),
                })
            }),
        }
    }

    /// Reads a definition's body with the definition open and its filter parameters in scope; the
    /// definition stays in scope, closed, for what follows it.
    fn def(&mut self, d: &Def<&'s str, Term<&'s str>>) -> Option<(&'s str, usize)> {
        let at = self.names.len();
        self.names.push(Name { name: d.name, arity: d.args.len(), open: true });
        for arg in &d.args {
            // `$x` binds a value; `f` and `$f`-less names are filters called with no arguments.
            let name = arg.strip_prefix('$').unwrap_or(arg);
            self.names.push(Name { name, arity: 0, open: false });
        }
        let found = self.term(&d.body);
        self.names.truncate(at + 1);
        self.names[at].open = false;
        found
    }

    fn pattern(&mut self, p: &Pattern<&'s str>) -> Option<(&'s str, usize)> {
        match p {
            Pattern::Var(_) => None,
            Pattern::Arr(ps) => ps.iter().find_map(|p| self.pattern(p)),
            Pattern::Obj(entries) => {
                entries.iter().find_map(|(k, p)| self.term(k).or_else(|| self.pattern(p)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::recursive_definition;

    fn found(code: &str) -> Option<(&str, usize)> {
        recursive_definition(code)
    }

    #[test]
    fn a_definition_calling_itself_is_found() {
        assert_eq!(found("def f: [f]; f"), Some(("f", 0)));
        assert_eq!(found("def walk2(g): (.[]? |= walk2(g)) | g; walk2(.)"), Some(("walk2", 1)));
        // Through a definition nested in it.
        assert_eq!(found("def f: def g: f; g; f"), Some(("f", 0)));
        // Deep in the body: an object value, a string interpolation, a condition.
        assert_eq!(found(r#"def f(x): { a: "\(if x then f(x) else 1 end)" }; f(1)"#), Some(("f", 1)));
    }

    #[test]
    fn calls_to_other_filters_of_the_same_name_are_not_recursion() {
        // Another arity is another filter (here the builtin `ltrimstr/1`).
        assert_eq!(found("def ltrimstr: ltrimstr(\" \"); .a | ltrimstr"), None);
        // A parameter shadows the definition of the same name.
        assert_eq!(found("def f(f): f; f(.)"), None);
        // A definition is closed once its body ends: later calls are plain calls.
        assert_eq!(found("def f: . + 1; def g: f | f; g"), None);
        assert_eq!(found("{ a: .x, b: (.y | map(. * 2)) }"), None);
        // Not a program: left to the compiler to explain.
        assert_eq!(found("{ a: "), None);
    }
}
