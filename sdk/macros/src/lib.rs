//! The `#[handler]` attribute of `sluice-sdk`; use it as `#[sluice_sdk::handler]`.
//!
//! The attribute only wires things up: it keeps the function as written and
//! adds a hidden module that implements the generated `Guest` trait by
//! calling it. Every conversion lives in `sluice-sdk` itself.

use proc_macro::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Safety};

/// Marks the function that handles this component's requests; see
/// `sluice_sdk::handler`.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let function = syn::parse_macro_input!(item as ItemFn);
    match expand(&args, &function) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

const SIGNATURE: &str = "fn(Request) -> Result<Response, Error>";

fn expand(
    args: &proc_macro2::TokenStream,
    function: &ItemFn,
) -> syn::Result<proc_macro2::TokenStream> {
    check(args, function)?;

    let name = &function.sig.ident;
    // Spanned on the signature, so that a parameter or return type that is
    // not the SDK's points at the user's code rather than at the attribute.
    let typed = quote_spanned! {function.sig.span()=>
        let function: fn(
            ::sluice_sdk::Request,
        ) -> ::core::result::Result<::sluice_sdk::Response, ::sluice_sdk::Error> = super::#name;
    };

    Ok(quote! {
        #function

        // A component has one handler: `#[macro_export]` puts this name at
        // the crate root, so a second `#[handler]` anywhere in the crate is
        // a compile error that names the rule.
        #[doc(hidden)]
        #[macro_export]
        macro_rules! sluice_sdk_allows_one_handler_per_component {
            () => {};
        }

        mod __sluice_sdk_handler {
            struct Handler;

            impl ::sluice_sdk::__private::Guest for Handler {
                fn handle(
                    request: ::sluice_sdk::__private::WitRequest,
                ) -> ::core::result::Result<
                    ::sluice_sdk::__private::WitResponse,
                    ::sluice_sdk::__private::WitError,
                > {
                    #typed
                    ::sluice_sdk::__private::handle(request, function)
                }
            }

            ::sluice_sdk::wit::export!(Handler);
        }
    })
}

/// Rejects what cannot be a handler, naming the problem in plain words.
fn check(args: &proc_macro2::TokenStream, function: &ItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    if !args.is_empty() {
        return Err(syn::Error::new_spanned(
            args,
            "`#[sluice_sdk::handler]` takes no arguments",
        ));
    }
    if let Some(asyncness) = &sig.asyncness {
        return Err(syn::Error::new_spanned(
            asyncness,
            format!("the `#[handler]` function must not be `async`: write `{SIGNATURE}`"),
        ));
    }
    if let Safety::Unsafe(unsafety) = &sig.safety {
        return Err(syn::Error::new_spanned(
            unsafety,
            "the `#[handler]` function must not be `unsafe`",
        ));
    }
    if let Some(constness) = &sig.constness {
        return Err(syn::Error::new_spanned(
            constness,
            "the `#[handler]` function must not be `const`",
        ));
    }
    if let Some(abi) = &sig.abi {
        return Err(syn::Error::new_spanned(
            abi,
            "the `#[handler]` function must be a plain Rust function, without `extern`",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "the `#[handler]` function must not be generic",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            variadic,
            format!("the `#[handler]` function must take `Request`: write `{SIGNATURE}`"),
        ));
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) => {
            return Err(syn::Error::new_spanned(
                receiver,
                "the `#[handler]` function must be a free function, not a method",
            ));
        }
        Some(FnArg::Typed(input)) if sig.inputs.len() == 1 => {
            if let syn::Type::Reference(reference) = &*input.ty {
                return Err(syn::Error::new_spanned(
                    reference,
                    "the `#[handler]` function must take `Request` by value, not by reference",
                ));
            }
        }
        _ => {
            return Err(syn::Error::new(
                sig.paren_token.span.join(),
                format!(
                    "the `#[handler]` function must take exactly one argument, the `Request`: \
                     write `{SIGNATURE}`"
                ),
            ));
        }
    }
    if let ReturnType::Default = sig.output {
        return Err(syn::Error::new_spanned(
            sig,
            format!(
                "the `#[handler]` function must return `Result<Response, Error>`: write `{SIGNATURE}`"
            ),
        ));
    }
    Ok(())
}
