//! The `#[handler]` and `#[on_message]` attributes of `sluice-sdk`; use
//! them as `#[sluice_sdk::handler]` and `#[sluice_sdk::on_message]`.
//!
//! The attributes only wire things up: each keeps the function as written
//! and adds a hidden module that implements the generated `Guest` trait of
//! its export by calling it. Every conversion lives in `sluice-sdk` itself.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Safety};

/// Marks the function that handles this component's requests; see
/// `sluice_sdk::handler`.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    attribute(Export::Handler, args, item)
}

/// Marks the function that consumes this component's messages; see
/// `sluice_sdk::on_message`.
#[proc_macro_attribute]
pub fn on_message(args: TokenStream, item: TokenStream) -> TokenStream {
    attribute(Export::OnMessage, args, item)
}

fn attribute(export: Export, args: TokenStream, item: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let function = syn::parse_macro_input!(item as ItemFn);
    match expand(export, &args, &function) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// The two exports a component may have, one attribute each.
#[derive(Debug, Clone, Copy)]
enum Export {
    /// `#[handler]`: the `handler` interface, for HTTP requests.
    Handler,
    /// `#[on_message]`: the `message-handler` interface, for messages.
    OnMessage,
}

impl Export {
    fn attribute(self) -> &'static str {
        match self {
            Self::Handler => "handler",
            Self::OnMessage => "on_message",
        }
    }

    /// The SDK type the function takes.
    fn input(self) -> &'static str {
        match self {
            Self::Handler => "Request",
            Self::OnMessage => "Message",
        }
    }

    /// The SDK type the function returns.
    fn output(self) -> &'static str {
        match self {
            Self::Handler => "Result<Response, Error>",
            Self::OnMessage => "Result<(), MessageError>",
        }
    }

    fn signature(self) -> String {
        format!("fn({}) -> {}", self.input(), self.output())
    }

    /// The function's type, spanned on the user's signature so that a
    /// parameter or return type that is not the SDK's points at their code
    /// rather than at the attribute.
    fn function_type(self, span: Span) -> proc_macro2::TokenStream {
        match self {
            Self::Handler => quote_spanned! {span=>
                fn(::sluice_sdk::Request)
                    -> ::core::result::Result<::sluice_sdk::Response, ::sluice_sdk::Error>
            },
            Self::OnMessage => quote_spanned! {span=>
                fn(::sluice_sdk::Message) -> ::core::result::Result<(), ::sluice_sdk::MessageError>
            },
        }
    }

    /// The `Guest` impl's method and the export macro call.
    fn export(self) -> proc_macro2::TokenStream {
        match self {
            Self::Handler => quote! {
                impl ::sluice_sdk::__private::Guest for Export {
                    fn handle(
                        request: ::sluice_sdk::__private::WitRequest,
                    ) -> ::core::result::Result<
                        ::sluice_sdk::__private::WitResponse,
                        ::sluice_sdk::__private::WitError,
                    > {
                        ::sluice_sdk::__private::handle(request, FUNCTION)
                    }

                    // It takes any route and dispatches itself.
                    fn routes() -> ::core::option::Option<
                        ::std::vec::Vec<::std::string::String>,
                    > {
                        ::core::option::Option::None
                    }
                }

                ::sluice_sdk::wit::export!(Export);
            },
            Self::OnMessage => quote! {
                impl ::sluice_sdk::__private::MessageGuest for Export {
                    fn handle(
                        message: ::sluice_sdk::__private::WitMessage,
                    ) -> ::core::result::Result<(), ::sluice_sdk::__private::WitMessageError> {
                        ::sluice_sdk::__private::handle_message(message, FUNCTION)
                    }
                }

                ::sluice_sdk::wit_messages::export_messages!(Export);
            },
        }
    }
}

fn expand(
    export: Export,
    args: &proc_macro2::TokenStream,
    function: &ItemFn,
) -> syn::Result<proc_macro2::TokenStream> {
    check(export, args, function)?;

    let name = &function.sig.ident;
    let span = function.sig.span();
    let function_type = export.function_type(span);
    let typed = quote_spanned! {span=> const FUNCTION: #function_type = super::#name; };
    let attribute = export.attribute();
    let module = format_ident!("__sluice_sdk_{attribute}");
    let one_per_component = format_ident!("sluice_sdk_allows_one_{attribute}_per_component");
    let body = export.export();

    Ok(quote! {
        #function

        // A component has one of each export: `#[macro_export]` puts this
        // name at the crate root, so a second use of the attribute anywhere
        // in the crate is a compile error that names the rule.
        #[doc(hidden)]
        #[macro_export]
        macro_rules! #one_per_component {
            () => {};
        }

        mod #module {
            #typed

            struct Export;

            #body
        }
    })
}

/// Rejects what cannot be the `export`'s function, naming the problem in
/// plain words.
fn check(export: Export, args: &proc_macro2::TokenStream, function: &ItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    let attribute = export.attribute();
    let (input, output, signature) = (export.input(), export.output(), export.signature());
    // Every message starts the same way and points at the offending tokens.
    let refuse = |tokens: &dyn quote::ToTokens, problem: String| {
        Err(syn::Error::new_spanned(
            tokens,
            format!("the `#[{attribute}]` function {problem}"),
        ))
    };
    if !args.is_empty() {
        return Err(syn::Error::new_spanned(
            args,
            format!("`#[sluice_sdk::{attribute}]` takes no arguments"),
        ));
    }
    if let Some(asyncness) = &sig.asyncness {
        return refuse(
            asyncness,
            format!("must not be `async`: write `{signature}`"),
        );
    }
    if let Safety::Unsafe(unsafety) = &sig.safety {
        return refuse(unsafety, "must not be `unsafe`".to_owned());
    }
    if let Some(constness) = &sig.constness {
        return refuse(constness, "must not be `const`".to_owned());
    }
    if let Some(abi) = &sig.abi {
        return refuse(
            abi,
            "must be a plain Rust function, without `extern`".to_owned(),
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return refuse(&sig.generics, "must not be generic".to_owned());
    }
    if let Some(variadic) = &sig.variadic {
        return refuse(
            variadic,
            format!("must take `{input}`: write `{signature}`"),
        );
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) => {
            return refuse(receiver, "must be a free function, not a method".to_owned());
        }
        Some(FnArg::Typed(arg)) if sig.inputs.len() == 1 => {
            if let syn::Type::Reference(reference) = &*arg.ty {
                return refuse(
                    reference,
                    format!("must take `{input}` by value, not by reference"),
                );
            }
        }
        _ => {
            return Err(syn::Error::new(
                sig.paren_token.span.join(),
                format!(
                    "the `#[{attribute}]` function must take exactly one argument, the \
                     `{input}`: write `{signature}`"
                ),
            ));
        }
    }
    if let ReturnType::Default = sig.output {
        return refuse(sig, format!("must return `{output}`: write `{signature}`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(export: Export, function: &str) -> Option<String> {
        let function: ItemFn = syn::parse_str(function).expect("test input parses");
        check(export, &proc_macro2::TokenStream::new(), &function)
            .err()
            .map(|err| err.to_string())
    }

    #[test]
    fn the_documented_signatures_pass() {
        assert_eq!(
            refusal(
                Export::Handler,
                "fn handle(req: Request) -> Result<Response, Error> { todo!() }"
            ),
            None
        );
        assert_eq!(
            refusal(
                Export::OnMessage,
                "fn consume(msg: Message) -> Result<(), MessageError> { todo!() }"
            ),
            None
        );
    }

    #[test]
    fn refusals_name_the_attribute_and_its_signature() {
        assert_eq!(
            refusal(Export::OnMessage, "async fn consume(msg: Message) {}").as_deref(),
            Some(
                "the `#[on_message]` function must not be `async`: \
                 write `fn(Message) -> Result<(), MessageError>`"
            )
        );
        assert_eq!(
            refusal(Export::Handler, "fn handle(req: &Request) -> R { todo!() }").as_deref(),
            Some("the `#[handler]` function must take `Request` by value, not by reference")
        );
        assert_eq!(
            refusal(
                Export::OnMessage,
                "fn consume(a: Message, b: u8) -> R { todo!() }"
            )
            .as_deref(),
            Some(
                "the `#[on_message]` function must take exactly one argument, the `Message`: \
                 write `fn(Message) -> Result<(), MessageError>`"
            )
        );
        assert_eq!(
            refusal(Export::OnMessage, "fn consume(msg: Message) {}").as_deref(),
            Some(
                "the `#[on_message]` function must return `Result<(), MessageError>`: \
                 write `fn(Message) -> Result<(), MessageError>`"
            )
        );
    }
}
