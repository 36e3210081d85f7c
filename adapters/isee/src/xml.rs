//! A small namespace-aware element tree over quick-xml, enough for the SOAP answer and the
//! attestation (both small documents), with limits on depth and size.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// The deepest element nesting accepted.
const MAX_DEPTH: usize = 64;
/// The most elements accepted in one document.
const MAX_ELEMENTS: usize = 100_000;

/// One element: its namespace, local name, attributes (unqualified names, `xmlns` ones dropped),
/// child elements and the text directly inside it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Element {
    pub ns: Option<String>,
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The value of an attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether the element is in namespace `ns`.
    pub fn is_in(&self, ns: &str) -> bool {
        self.ns.as_deref() == Some(ns)
    }
}

/// Why a document is not well-formed XML (or too large); never quotes the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct XmlError(pub String);

fn local(name: &[u8]) -> Result<String, XmlError> {
    std::str::from_utf8(name).map(str::to_owned).map_err(|_| XmlError("a name is not UTF-8".into()))
}

/// Parses a whole document into its root element.
pub(crate) fn parse(bytes: &[u8]) -> Result<Element, XmlError> {
    let mut reader = NsReader::from_reader(bytes);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let (ns, event) =
            reader.read_resolved_event().map_err(|e| XmlError(format!("not well-formed XML: {e}")))?;
        let ns = match ns {
            ResolveResult::Bound(ns) => Some(local(ns.as_ref())?),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(prefix) => {
                return Err(XmlError(format!(
                    "undeclared namespace prefix `{}`",
                    String::from_utf8_lossy(&prefix)
                )))
            }
        };
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                count += 1;
                if count > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err(XmlError("document too large or too deeply nested".into()));
                }
                if root.is_some() {
                    return Err(XmlError("content after the root element".into()));
                }
                let mut element =
                    Element { ns, name: local(start.local_name().as_ref())?, ..Element::default() };
                for attr in start.attributes() {
                    let attr = attr.map_err(|e| XmlError(format!("bad attribute: {e}")))?;
                    let key = attr.key;
                    if key.as_namespace_binding().is_some() {
                        continue;
                    }
                    let value = attr
                        .decode_and_unescape_value(reader.decoder())
                        .map_err(|e| XmlError(format!("bad attribute value: {e}")))?;
                    element.attrs.push((local(key.local_name().as_ref())?, value.into_owned()));
                }
                if matches!(event, Event::Empty(_)) {
                    attach(&mut stack, &mut root, element);
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                let element = stack.pop().ok_or_else(|| XmlError("unbalanced end tag".into()))?;
                attach(&mut stack, &mut root, element);
            }
            Event::Text(text) => {
                let text = text.decode().map_err(|e| XmlError(format!("bad text: {e}")))?;
                push_text(&mut stack, &text)?;
            }
            Event::CData(data) => {
                let text = data.decode().map_err(|e| XmlError(format!("bad CDATA: {e}")))?;
                push_text(&mut stack, &text)?;
            }
            Event::GeneralRef(reference) => {
                let name = reference.decode().map_err(|e| XmlError(format!("bad reference: {e}")))?;
                let reference = format!("&{name};");
                let resolved = quick_xml::escape::unescape(&reference)
                    .map_err(|_| XmlError(format!("unknown entity `{reference}`")))?;
                push_text(&mut stack, &resolved)?;
            }
            Event::DocType(_) => return Err(XmlError("DOCTYPE is not accepted".into())),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError("document ends inside an element".into()));
    }
    root.ok_or_else(|| XmlError("no root element".into()))
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn push_text(stack: &mut [Element], text: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(element) => {
            element.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(XmlError("text outside the root element".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_tree_with_namespaces_attributes_and_text() {
        let doc = br#"<?xml version="1.0"?><a:R xmlns:a="urn:a" xmlns="urn:d" k="v &amp; w"><C>x &lt; y<![CDATA[ & z]]></C><D/></a:R>"#;
        let root = parse(doc).unwrap();
        assert!(root.is_in("urn:a"));
        assert_eq!(root.name, "R");
        assert_eq!(root.attr("k"), Some("v & w"));
        assert_eq!(root.attrs.len(), 1, "xmlns attributes are dropped");
        let c = root.child("C").unwrap();
        assert!(c.is_in("urn:d"));
        assert_eq!(c.text, "x < y & z");
        assert!(root.child("D").is_some());
    }

    #[test]
    fn refuses_malformed_documents() {
        for bad in [
            &b"<a><b></a>"[..],
            b"<a>",
            b"",
            b"<a/><b/>",
            b"<x:a/>",
            b"<!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>",
            b"<a>&nope;</a>",
            b"text",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
