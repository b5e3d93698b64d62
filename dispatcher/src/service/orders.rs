//! `trundle.v1.OrderService`, for shops.

use std::pin::Pin;

use fleet_core::dispatcher::{Input, Reply};
use rand::Rng;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use trundle_proto::convert::{self, order_id};
use trundle_proto::pb;

use super::{Ctx, unexpected};
use crate::Error;

pub struct OrderApi(pub Ctx);

type OrderStream = Pin<Box<dyn Stream<Item = Result<pb::Order, Status>> + Send>>;

#[tonic::async_trait]
impl pb::order_service_server::OrderService for OrderApi {
    async fn quote(&self, req: Request<pb::QuoteRequest>) -> Result<Response<pb::QuoteResponse>, Status> {
        let started = std::time::Instant::now();
        let r = self.quote_inner(req).await;
        let refused = match &r {
            Ok(resp) => resp.get_ref().quote.as_ref().filter(|q| !q.feasible).map(|q| q.refusal.clone()),
            Err(st) => refusal_reason(st),
        };
        self.0.rpc.record("Quote", started.elapsed(), refused);
        r
    }

    async fn place_order(
        &self,
        req: Request<pb::PlaceOrderRequest>,
    ) -> Result<Response<pb::PlaceOrderResponse>, Status> {
        let started = std::time::Instant::now();
        let r = self.place_inner(req).await;
        self.0.rpc.record("PlaceOrder", started.elapsed(), r.as_ref().err().and_then(refusal_reason));
        r
    }

    async fn get_order(&self, req: Request<pb::GetOrderRequest>) -> Result<Response<pb::Order>, Status> {
        let shop = self.0.auth.shop(req.metadata())?;
        let id = order_id("order_id", &req.get_ref().order_id).map_err(Error::from)?;
        let o = self.0.core.query(move |d| d.order_for_shop(&shop, &id).map(convert::order_to_wire)).await?;
        Ok(Response::new(o.map_err(Error::from)?))
    }

    async fn list_orders(
        &self,
        req: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let shop = self.0.auth.shop(req.metadata())?;
        let r = req.get_ref();
        let limit = match r.limit {
            0 => 100,
            n if n <= 1000 => n as usize,
            n => {
                return Err(Error::Wire(convert::WireError::new(
                    "limit",
                    format!("limit {n} is over the maximum of 1000"),
                ))
                .into());
            }
        };
        let include_closed = r.include_closed;
        // The page token is the id of the last order of the previous page.
        let after = if r.page_token.is_empty() {
            None
        } else {
            Some(order_id("page_token", &r.page_token).map_err(Error::from)?)
        };
        let page = self
            .0
            .core
            .query(move |d| {
                let mut v: Vec<_> =
                    d.orders().filter(|o| o.shop == shop && (include_closed || !o.status.is_terminal())).collect();
                v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
                let start = match &after {
                    None => 0,
                    Some(id) => match v.iter().position(|o| &o.id == id) {
                        Some(i) => i + 1,
                        None => return Err(format!("page_token {id} is not an order of this listing")),
                    },
                };
                let rest = &v[start.min(v.len())..];
                let orders: Vec<pb::Order> = rest.iter().take(limit).map(|o| convert::order_to_wire(o)).collect();
                let next = if rest.len() > limit {
                    orders.last().map(|o| o.order_id.clone()).unwrap_or_default()
                } else {
                    String::new()
                };
                Ok((orders, next))
            })
            .await?;
        let (orders, next_page_token) = page.map_err(|why| Error::Wire(convert::WireError::new("page_token", why)))?;
        Ok(Response::new(pb::ListOrdersResponse { orders, next_page_token }))
    }

    async fn cancel_order(&self, req: Request<pb::CancelOrderRequest>) -> Result<Response<pb::Order>, Status> {
        let shop = self.0.auth.shop(req.metadata())?;
        let order = order_id("order_id", &req.get_ref().order_id).map_err(Error::from)?;
        match self.0.core.call(Input::CancelOrder { shop, order }).await? {
            Reply::Order(o) => Ok(Response::new(convert::order_to_wire(&o))),
            other => Err(unexpected(other)),
        }
    }

    async fn mark_ready(&self, req: Request<pb::MarkReadyRequest>) -> Result<Response<pb::Order>, Status> {
        let shop = self.0.auth.shop(req.metadata())?;
        let order = order_id("order_id", &req.get_ref().order_id).map_err(Error::from)?;
        match self.0.core.call(Input::MarkReady { shop, order }).await? {
            Reply::Order(o) => Ok(Response::new(convert::order_to_wire(&o))),
            other => Err(unexpected(other)),
        }
    }

    async fn new_tracking_link(
        &self,
        req: Request<pb::NewTrackingLinkRequest>,
    ) -> Result<Response<pb::TrackingLink>, Status> {
        let shop = self.0.auth.shop(req.metadata())?;
        let order = order_id("order_id", &req.get_ref().order_id).map_err(Error::from)?;
        let secret = new_link_secret();
        let link_hash = crate::auth::hash_hex(&secret);
        match self.0.core.call(Input::NewTrackingLink { shop, order, link_hash }).await? {
            Reply::Order(o) => {
                Ok(Response::new(pb::TrackingLink { order_id: o.id.to_string(), tracking_secret: secret }))
            }
            other => Err(unexpected(other)),
        }
    }

    type WatchOrderStream = OrderStream;

    async fn watch_order(&self, req: Request<pb::WatchOrderRequest>) -> Result<Response<OrderStream>, Status> {
        let shop = self.0.auth.shop(req.metadata())?;
        let id = order_id("order_id", &req.get_ref().order_id).map_err(Error::from)?;
        // Subscribe before reading the current state, so no change falls between the two.
        let mut changes = self.0.core.subscribe_orders();
        let core = self.0.core.clone();
        let (s, i) = (shop.clone(), id.clone());
        let first = core.query(move |d| d.order_for_shop(&s, &i).cloned()).await?.map_err(Error::from)?;
        let stream = async_stream(move |tx| async move {
            let mut last = first.clone();
            if tx.send(Ok(convert::order_to_wire(&first))).await.is_err() || first.status.is_terminal() {
                return;
            }
            loop {
                let change = tokio::select! {
                    c = changes.recv() => c,
                    () = core.closed() => return,
                };
                let next = match change {
                    Ok(o) if o.id == id => (*o).clone(),
                    Ok(_) => continue,
                    // Missed some changes: read the current state instead.
                    Err(RecvError::Lagged(_)) => {
                        let (s, i) = (shop.clone(), id.clone());
                        match core.query(move |d| d.order_for_shop(&s, &i).cloned()).await {
                            Ok(Ok(o)) => o,
                            _ => return,
                        }
                    }
                    Err(RecvError::Closed) => return,
                };
                if next == last {
                    continue;
                }
                let done = next.status.is_terminal();
                if tx.send(Ok(convert::order_to_wire(&next))).await.is_err() || done {
                    return;
                }
                last = next;
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a spawned task through a small channel; the task ends when the client goes away.
pub(crate) fn async_stream<T, F, Fut>(f: F) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

impl OrderApi {
    async fn quote_inner(&self, req: Request<pb::QuoteRequest>) -> Result<Response<pb::QuoteResponse>, Status> {
        let shop = self.0.auth.shop(req.metadata())?;
        let request = convert::delivery(req.get_ref().delivery.as_ref()).map_err(Error::from)?;
        match self.0.core.call(Input::Quote { shop, request }).await? {
            Reply::Quote(q) => Ok(Response::new(pb::QuoteResponse { quote: Some(convert::quote_to_wire(&q)) })),
            other => Err(unexpected(other)),
        }
    }

    async fn place_inner(
        &self,
        req: Request<pb::PlaceOrderRequest>,
    ) -> Result<Response<pb::PlaceOrderResponse>, Status> {
        let shop = self.0.auth.shop(req.metadata())?;
        let r = req.get_ref();
        let request = convert::delivery(r.delivery.as_ref()).map_err(Error::from)?;
        let pin = format!("{:06}", rand::rng().random_range(0..1_000_000u32));
        let secret = new_link_secret();
        let link_hash = Some(crate::auth::hash_hex(&secret));
        let input = Input::PlaceOrder { shop, idempotency_key: r.idempotency_key.clone(), request, pin, link_hash };
        match self.0.core.call(input).await? {
            Reply::Placed { order, quote, replayed } => Ok(Response::new(pb::PlaceOrderResponse {
                // A replay of a closed order made no link.
                tracking_secret: if order.link_hash.is_some() && !order.status.is_terminal() {
                    secret
                } else {
                    String::new()
                },
                order: Some(convert::order_to_wire(&order)),
                quote: Some(convert::quote_to_wire(&quote)),
                replayed,
            })),
            other => Err(unexpected(other)),
        }
    }
}

/// A tracking link's secret: 128 random bits as 32 hex digits.
fn new_link_secret() -> String {
    let raw: [u8; 16] = rand::rng().random();
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stable reason of a refusal (FAILED_PRECONDITION or RESOURCE_EXHAUSTED with an ErrorInfo), if `st` is one.
fn refusal_reason(st: &Status) -> Option<String> {
    use tonic_types::StatusExt;
    if !matches!(st.code(), tonic::Code::FailedPrecondition | tonic::Code::ResourceExhausted) {
        return None;
    }
    st.get_details_error_info().map(|i| i.reason)
}
