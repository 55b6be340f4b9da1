import { transportSuite } from './suite.js';

transportSuite('websocket');
