//! Typed Rust tasks: a task that takes and returns your own serde types instead of JSON maps.
//!
//! [`typed_fn`] wraps an async closure `Fn(Input, Context) -> Result<Output, Failure>`. Its
//! input is read from the values the step requires (an input struct's fields are the names it
//! requires), its output must serialize to an object (its fields are the names it provides).
//! Registered with [`Registry::add`](crate::Registry::add), it gives a
//! [`TaskRef`](weft_model::flow::TaskRef) that carries both shapes, so that
//! [`FlowBuilder::step`](weft_model::flow::FlowBuilder::step) fills in `requires` and
//! `provides` and checks, when the flow is built, that every value a step takes is of the type
//! the step providing it gives.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use weft_engine::{typed_fn, Registry};
//! use weft_model::flow::FlowBuilder;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Order { quantity: u32 }
//! #[derive(Serialize, Deserialize)]
//! struct Priced { total: f64 }
//!
//! let mut registry = Registry::new();
//! let price = registry.add("price", "1", typed_fn(|order: Order, _ctx| async move {
//!     Ok(Priced { total: f64::from(order.quantity) * 2.5 })
//! }));
//! let flow = FlowBuilder::linear("checkout")
//!     .input("quantity", None)
//!     .step("price", &price, |t| t)
//!     .build()
//!     .unwrap();
//! assert_eq!(flow.steps[0].provides, vec!["total"]);
//! ```

use crate::task::{Context, Task};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::marker::PhantomData;
use weft_model::shape::Shape;
use weft_model::Failure;
use weft_store::BoxFuture;

/// A typed task made from an async closure; see [`typed_fn`].
pub struct TypedFn<I, O, F> {
    f: F,
    types: PhantomData<fn(I) -> O>,
}

/// Wraps an async closure that takes the step's inputs as `I` and returns its output as `O`
/// (both structs with named fields; `O` is also `Deserialize`, so that its shape is known and
/// a plan's result can be read back as it).
///
/// A step whose values do not deserialize as `I` fails with `invalid_input`, naming the step
/// and the field; an `O` that is not a JSON object fails with `invalid_output`.
pub fn typed_fn<I, O, F, Fut>(f: F) -> TypedFn<I, O, F>
where
    I: DeserializeOwned + Send + 'static,
    O: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(I, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, Failure>> + Send + 'static,
{
    TypedFn {
        f,
        types: PhantomData,
    }
}

impl<I, O, F, Fut> Task for TypedFn<I, O, F>
where
    I: DeserializeOwned + Send + 'static,
    O: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(I, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, Failure>> + Send + 'static,
{
    fn execute(&self, ctx: Context) -> BoxFuture<Result<Value, Failure>> {
        let input = match I::deserialize(Value::Object(ctx.inputs.clone())) {
            Ok(input) => input,
            Err(e) => {
                let failure = Failure::new(
                    "invalid_input",
                    format!("step `{}`: its inputs do not fit its type: {e}", ctx.step),
                );
                return Box::pin(std::future::ready(Err(failure)));
            }
        };
        let step = ctx.step.clone();
        let running = (self.f)(input, ctx);
        Box::pin(async move {
            let output = running.await?;
            match serde_json::to_value(output) {
                Ok(value @ Value::Object(_)) => Ok(value),
                Ok(other) => Err(Failure::new(
                    "invalid_output",
                    format!("step `{step}` returned {other}, not an object of named values"),
                )),
                Err(e) => Err(Failure::new(
                    "invalid_output",
                    format!("step `{step}`: its output cannot be written as JSON: {e}"),
                )),
            }
        })
    }

    fn shapes(&self) -> Option<(Shape, Shape)> {
        Some((Shape::of::<I>().ok()?, Shape::of::<O>().ok()?))
    }
}
