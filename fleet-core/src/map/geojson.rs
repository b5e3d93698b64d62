//! GeoJSON views of the map and of a route, for the operator's map view and for debugging in any GIS tool.

use petgraph::visit::EdgeRef;

use super::{MapGraph, Route};
use crate::{LatLon, NodeId};

impl MapGraph {
    /// The walkable graph as a GeoJSON FeatureCollection of LineStrings (one per street segment, both directions
    /// together), with length and closure state.
    pub fn to_geojson(&self) -> String {
        let mut out = String::from("{\"type\":\"FeatureCollection\",\"features\":[");
        let mut first = true;
        for e in self.graph.edge_references().filter(|e| e.source().index() < e.target().index()) {
            let (a, b) = (&self.graph[e.source()], &self.graph[e.target()]);
            let closed = self.closed.contains(&(NodeId(e.source().index() as u32), NodeId(e.target().index() as u32)));
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&format!(
                "{{\"type\":\"Feature\",\"properties\":{{\"from\":{},\"to\":{},\"length_m\":{:.1},\"crossing\":{},\"closed\":{},\"osm_way\":{}}},\"geometry\":{{\"type\":\"LineString\",\"coordinates\":[[{:.7},{:.7}],[{:.7},{:.7}]]}}}}",
                e.source().index(),
                e.target().index(),
                e.weight().length_m,
                e.weight().crossing,
                closed,
                e.weight().way_id,
                a.pos.lon(),
                a.pos.lat(),
                b.pos.lon(),
                b.pos.lat()
            ));
        }
        out.push_str("]}");
        out
    }
}

/// A route's geometry as a GeoJSON Feature (LineString) with its length and duration.
pub fn route_geojson(route: &Route, geometry: &[LatLon]) -> String {
    let coords: Vec<String> = geometry.iter().map(|p| format!("[{:.7},{:.7}]", p.lon(), p.lat())).collect();
    format!(
        "{{\"type\":\"Feature\",\"properties\":{{\"length_m\":{:.1},\"duration_s\":{:.1},\"nodes\":{}}},\"geometry\":{{\"type\":\"LineString\",\"coordinates\":[{}]}}}}",
        route.length_m,
        route.duration_s,
        route.nodes.len(),
        coords.join(",")
    )
}
