import './base.css';
import './versions.css';
