//! The phases a Ruby handler can be attached to.

use crate::host::Context;

/// A handler slot: one per nginx phase (and later per filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum HandlerSlot {
    PostRead = 0,
    ServerRewrite = 1,
    Rewrite = 2,
    Access = 3,
    Content = 4,
    Log = 5,
    HeaderFilter = 6,
    BodyFilter = 7,
}

impl HandlerSlot {
    pub const COUNT: usize = 8;
    pub const ALL: [HandlerSlot; HandlerSlot::COUNT] = [
        HandlerSlot::PostRead,
        HandlerSlot::ServerRewrite,
        HandlerSlot::Rewrite,
        HandlerSlot::Access,
        HandlerSlot::Content,
        HandlerSlot::Log,
        HandlerSlot::HeaderFilter,
        HandlerSlot::BodyFilter,
    ];

    pub fn from_index(index: usize) -> Option<HandlerSlot> {
        HandlerSlot::ALL.get(index).copied()
    }

    /// The directive prefix, for log lines.
    pub fn directive(self) -> &'static str {
        match self {
            HandlerSlot::PostRead => "mruby_post_read_handler",
            HandlerSlot::ServerRewrite => "mruby_server_rewrite_handler",
            HandlerSlot::Rewrite => "mruby_rewrite_handler",
            HandlerSlot::Access => "mruby_access_handler",
            HandlerSlot::Content => "mruby_content_handler",
            HandlerSlot::Log => "mruby_log_handler",
            HandlerSlot::HeaderFilter => "mruby_output_header_filter",
            HandlerSlot::BodyFilter => "mruby_output_body_filter",
        }
    }

    /// The host context a script of this slot runs in.
    pub fn context(self) -> Context {
        match self {
            HandlerSlot::PostRead => Context::POST_READ,
            HandlerSlot::ServerRewrite => Context::SERVER_REWRITE,
            HandlerSlot::Rewrite => Context::REWRITE,
            HandlerSlot::Access => Context::ACCESS,
            HandlerSlot::Content => Context::CONTENT,
            HandlerSlot::Log => Context::LOG,
            HandlerSlot::HeaderFilter => Context::HEADER_FILTER,
            HandlerSlot::BodyFilter => Context::BODY_FILTER,
        }
    }
}
