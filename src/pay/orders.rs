//! Orders are the app's: a small store trait the checkout and the notify
//! route use, an in-memory implementation for the demo and tests, and
//! `out_trade_no` generation.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::WxUser;

/// A boxed future of an order-store call.
pub type OrderFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, OrderError>> + Send + 'a>>;

/// How long WeChat Pay honours a prepay id.
pub const PREPAY_ID_LIFETIME: Duration = Duration::from_secs(2 * 3600);

/// The state of an order, as `GET /api/pay/orders/{no}` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderState {
    /// Not paid (yet).
    Notpay,
    /// Paid: a verified notification (or query) said so.
    Success,
    /// Closed unpaid.
    Closed,
    /// Refunded.
    Refund,
}

impl OrderState {
    /// `NOTPAY`, `SUCCESS`, `CLOSED`, `REFUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Notpay => "NOTPAY",
            OrderState::Success => "SUCCESS",
            OrderState::Closed => "CLOSED",
            OrderState::Refund => "REFUND",
        }
    }
}

/// One order of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The merchant's order number.
    pub out_trade_no: String,
    /// The payer, from the session that created the order.
    pub openid: String,
    /// Shown in the payer's bill.
    pub description: String,
    /// Amount in fen, priced by the server.
    pub total: i64,
    /// Where the order stands.
    pub state: OrderState,
    /// The prepay id and when it was issued.
    pub prepay: Option<(String, SystemTime)>,
    /// WeChat Pay's transaction id, once paid.
    pub transaction_id: Option<String>,
}

impl Order {
    /// A new unpaid order for the session's user, with a fresh `out_trade_no`.
    /// The payer is the session's openid: there is no way to name another.
    pub fn for_user<T>(user: &WxUser<T>, description: impl Into<String>, total: i64) -> Order {
        Order::for_openid(user.openid(), description, total)
    }

    pub(crate) fn for_openid(openid: &str, description: impl Into<String>, total: i64) -> Order {
        Order {
            out_trade_no: new_out_trade_no(),
            openid: openid.to_owned(),
            description: description.into(),
            total,
            state: OrderState::Notpay,
            prepay: None,
            transaction_id: None,
        }
    }

    /// The stored prepay id if it is still valid at `now` (with a 5-minute margin).
    pub fn live_prepay_id(&self, now: SystemTime) -> Option<&str> {
        let (id, at) = self.prepay.as_ref()?;
        let age = now.duration_since(*at).ok()?;
        (age + Duration::from_secs(300) < PREPAY_ID_LIFETIME).then_some(id.as_str())
    }
}

/// What marking an order paid did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkPaid {
    /// The order went from unpaid to paid.
    Updated,
    /// It was already paid: a duplicate notification, nothing changed.
    AlreadyPaid,
}

/// An order store failure: the notify route answers 5xx so WeChat Pay retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderError(pub String);

impl std::fmt::Display for OrderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "order store: {}", self.0)
    }
}

impl std::error::Error for OrderError {}

/// The app's orders. `mark_paid` must be idempotent and durable before it
/// returns: the notify route answers 2xx only after it succeeded.
pub trait OrderStore: Send + Sync + 'static {
    /// Stores a new order.
    fn create(&self, order: Order) -> OrderFuture<'_, ()>;
    /// The order with this number.
    fn find<'a>(&'a self, out_trade_no: &'a str) -> OrderFuture<'a, Option<Order>>;
    /// Remembers the prepay id issued for the order.
    fn set_prepay<'a>(
        &'a self,
        out_trade_no: &'a str,
        prepay_id: &'a str,
        at: SystemTime,
    ) -> OrderFuture<'a, ()>;
    /// Marks the order paid with this transaction id, once.
    fn mark_paid<'a>(
        &'a self,
        out_trade_no: &'a str,
        transaction_id: &'a str,
    ) -> OrderFuture<'a, MarkPaid>;
    /// Marks the order refunded (a verified `REFUND.SUCCESS`). Default: nothing.
    fn mark_refunded<'a>(&'a self, out_trade_no: &'a str) -> OrderFuture<'a, ()> {
        let _ = out_trade_no;
        Box::pin(async { Ok(()) })
    }
}

/// Orders in memory, for the demo and tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryOrders {
    orders: Arc<Mutex<HashMap<String, Order>>>,
}

impl MemoryOrders {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Order>) -> T) -> T {
        f(&mut self.orders.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The order, synchronously (for tests).
    pub fn get(&self, out_trade_no: &str) -> Option<Order> {
        self.with(|m| m.get(out_trade_no).cloned())
    }
}

impl OrderStore for MemoryOrders {
    fn create(&self, order: Order) -> OrderFuture<'_, ()> {
        let r = self.with(|m| {
            if m.contains_key(&order.out_trade_no) {
                return Err(OrderError("duplicate out_trade_no".into()));
            }
            m.insert(order.out_trade_no.clone(), order);
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn find<'a>(&'a self, out_trade_no: &'a str) -> OrderFuture<'a, Option<Order>> {
        let r = self.get(out_trade_no);
        Box::pin(async move { Ok(r) })
    }

    fn set_prepay<'a>(
        &'a self,
        out_trade_no: &'a str,
        prepay_id: &'a str,
        at: SystemTime,
    ) -> OrderFuture<'a, ()> {
        self.with(|m| {
            if let Some(o) = m.get_mut(out_trade_no) {
                o.prepay = Some((prepay_id.to_owned(), at));
            }
        });
        Box::pin(async { Ok(()) })
    }

    fn mark_paid<'a>(
        &'a self,
        out_trade_no: &'a str,
        transaction_id: &'a str,
    ) -> OrderFuture<'a, MarkPaid> {
        let r = self.with(|m| match m.get_mut(out_trade_no) {
            None => Err(OrderError("no such order".into())),
            Some(o) if o.state == OrderState::Notpay => {
                o.state = OrderState::Success;
                o.transaction_id = Some(transaction_id.to_owned());
                Ok(MarkPaid::Updated)
            }
            Some(_) => Ok(MarkPaid::AlreadyPaid),
        });
        Box::pin(async move { r })
    }

    fn mark_refunded<'a>(&'a self, out_trade_no: &'a str) -> OrderFuture<'a, ()> {
        self.with(|m| {
            if let Some(o) = m.get_mut(out_trade_no) {
                if o.state == OrderState::Success {
                    o.state = OrderState::Refund;
                }
            }
        });
        Box::pin(async { Ok(()) })
    }
}

/// Whether `s` is a valid `out_trade_no`: 6–32 of `0-9A-Za-z_-|*`.
pub fn valid_out_trade_no(s: &str) -> bool {
    (6..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'))
}

/// A fresh `out_trade_no`: `WX` + Unix seconds + 16 random characters (28, all alphanumeric).
pub fn new_out_trade_no() -> String {
    let rand = super::sign::nonce();
    format!("WX{}{}", crate::clock::now_secs(), &rand[..16])
}
