//! Mapping programs may not recurse, nor loop without a bound.
//!
//! jaq evaluates a call to a filter defined in jq by recursing on the thread's stack: a definition
//! that calls itself (`def f: [f]; f`, often a slip for a call to a builtin of the same name) runs
//! until the stack is exhausted, which aborts the whole gateway, not one upload. The builtins that
//! loop until a condition holds (`repeat`, `while`, `until`, `recurse(f)`, `recurse(f; cond)`) are
//! written that way in jq, and nothing but the program bounds them: `until(.x; .)` spins for ever
//! on a row without `x`, holding the upload (or exhausting the stack). A record of a delivery needs neither (`map`, `reduce`,
//! `..` and the code tables cover what a mapping does), so a program whose definitions call
//! themselves, directly or through definitions nested in them, or that calls one of those loops,
//! is refused when the mapping is loaded, naming the filter.

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::path::Part;

/// Builtins that loop until a condition holds, as (name, arity).
const LOOPS: &[(&str, usize)] = &[("repeat", 1), ("while", 2), ("until", 2), ("recurse", 1), ("recurse", 2)];

/// Why a program is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unbounded<'s> {
    /// A definition that calls itself (its name as written in the program, its arity).
    Recursive(&'s str, usize),
    /// A call to one of the [`LOOPS`] builtins (its name as written in the program, its arity).
    Loop(&'s str, usize),
}

impl Unbounded<'_> {
    /// The filter's name as written in the program (a slice of it, to find its line).
    pub(crate) fn name(&self) -> &str {
        match self {
            Unbounded::Recursive(name, _) | Unbounded::Loop(name, _) => name,
        }
    }
}

impl std::fmt::Display for Unbounded<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unbounded::Recursive(name, arity) => write!(
                f,
                "filter {name}/{arity} calls itself: a mapping may not recurse (map, reduce, `..` and the code tables do what a row needs)"
            ),
            Unbounded::Loop(name, arity) => write!(
                f,
                "filter {name}/{arity} loops until a condition holds, which a row may never meet: a mapping may not use it (map, reduce over the record's values, `..`, limit and the code tables do what a row needs)"
            ),
        }
    }
}

/// The first definition of `code` that calls itself or the first call to an unbounded loop;
/// `None` when there is none or `code` does not parse (compiling says why).
pub(crate) fn unbounded(code: &str) -> Option<Unbounded<'_>> {
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
    fn term(&mut self, t: &Term<&'s str>) -> Option<Unbounded<'s>> {
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
                    Some(n) if n.open => Some(Unbounded::Recursive(name, args.len())),
                    None if LOOPS.contains(&(*name, args.len())) => Some(Unbounded::Loop(name, args.len())),
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
    fn def(&mut self, d: &Def<&'s str, Term<&'s str>>) -> Option<Unbounded<'s>> {
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

    fn pattern(&mut self, p: &Pattern<&'s str>) -> Option<Unbounded<'s>> {
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
    use super::{unbounded, Unbounded};

    fn found(code: &str) -> Option<(&str, usize)> {
        match unbounded(code)? {
            Unbounded::Recursive(name, arity) => Some((name, arity)),
            Unbounded::Loop(..) => None,
        }
    }

    fn looping(code: &str) -> Option<(&str, usize)> {
        match unbounded(code)? {
            Unbounded::Loop(name, arity) => Some((name, arity)),
            Unbounded::Recursive(..) => None,
        }
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

    #[test]
    fn calls_to_the_builtin_loops_are_found() {
        assert_eq!(looping("{ a: (.x | until(. > 3; . + 1)) }"), Some(("until", 2)));
        assert_eq!(looping("[limit(3; repeat(.))]"), Some(("repeat", 1)));
        assert_eq!(looping("def f: while(. < 3; . + 1); f"), Some(("while", 2)));
        assert_eq!(looping("[recurse(. + 1; . < 9)]"), Some(("recurse", 2)));
        assert_eq!(looping(r#""\(recurse(.a))""#), Some(("recurse", 1)));
    }

    #[test]
    fn bounded_walks_and_own_filters_of_those_names_are_allowed() {
        // `recurse/0` and `..` walk the record, which is finite.
        assert_eq!(unbounded("[.. | strings] | length"), None);
        assert_eq!(unbounded("[recurse | numbers]"), None);
        // A definition of the program's own with a loop's name is the program's, not the loop.
        assert_eq!(unbounded("def until(c; u): u; .x | until(true; . + 1)"), None);
        assert_eq!(unbounded("def repeat(f): f; [repeat(.x)]"), None);
    }
}
