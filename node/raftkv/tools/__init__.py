"""Tools around the node, not the node: `raftkv local` (a cluster of processes on
127.0.0.1), `raftkv auth` (tokens), the demo, and free ports for anything that
starts nodes. The node (runtime/) never imports them."""
