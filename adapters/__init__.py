"""The outside world: `amazon/` (Selling Partner API), `shopify/` (Admin GraphQL API), `sim/` (local
stand-ins for both, real HTTP servers on loopback). Adapters never import the daemon's store or engine."""
