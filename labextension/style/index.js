import './base.css';
import './versions.css';
import './cluster.css';
